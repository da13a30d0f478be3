"""Parameter counts and multiply-accumulates (MACs) of a model under a named convention.

A count is (input-size rule) × (op-counting rule). One MAC = one multiply-accumulate; ``macs_g`` = macs/1e9.

Input-size rules (:data:`CONVENTIONS`), batch 1, RGB:

| convention | LR input                          | used by                                          |
|------------|-----------------------------------|--------------------------------------------------|
| hr720p     | ceil(720/s) × ceil(1280/s)        | a 1280×720 HR output: DRSAN, SPAN-light, HSPAN    |
| ntire256   | 256 × 256                         | NTIRE 2024 efficient SR (SPAN-ESR)               |

Op-counting rules (:data:`OPS`); each paper's rule is in the model registry (``ModelSpec.counting``):

| ops        | what counts                                                     | papers               |
|------------|-----------------------------------------------------------------|----------------------|
| fvcore     | fvcore ``FlopCountAnalysis`` defaults: conv, linear, matmul,    | SPAN-light,          |
|            | einsum, bmm, norms, pooling, upsampling (one per MAC); the      | SPAN-ESR (NTIRE),    |
|            | attention operators by their kernels' ``macs()``. Skipped:      | HSPAN                |
|            | elementwise ops, exp/sum/div, GELU, unfold/fold, PReLU …        |                      |
| multi_adds | conv MACs + one add per output element of a conv with bias +    | DRSAN "Multi-Adds"   |
|            | one multiply per PReLU element + adds made in the model's own   | (shared/specs/       |
|            | top-level forward (DRSAN: the global residual) + attention      | drsan.md)            |
|            | ``macs()``. Skipped: sigmoid, gating products, the DRM's        |                      |
|            | weighted sums and pooling, pixel shuffle.                       |                      |

Cross-check (:func:`mac_report`): the same forward counted by fvcore alone (as NTIRE's ``test_demo.py``
runs it), by torch's ``FlopCounterMode`` (on the meta device; FLOPs / 2) and by the operator registry;
per op category the counters are compared and every gap above 1 % is reported by name, never summed away.

How: ``fvcore`` traces a real forward on the CPU (fvcore's jit trace needs real tensors), so its cost
is that of one forward pass; ``multi_adds`` runs the forward on the meta device (no arithmetic at all)
and counts aten ops by their shapes. In both, the attention operators of the operator registry
(``kernels.registry``) run as shape-only stand-ins inside ``kernels.counting()`` (no class is patched),
so HSPAN's N×N scores are never computed; each call's MACs come from its kernel module's ``macs()``.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import architectures
from kernels import OPERATORS, counting
from kernels.registry import Call


@dataclass(frozen=True)
class Convention:
    """An input-size rule: ``lr_size(scale) -> (h, w)`` of the LR input."""

    name: str
    description: str
    lr_size: Callable[[int], tuple[int, int]]


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("hr720p", "LR ceil(720/s)×ceil(1280/s): a 1280×720 HR output", lambda s: (
            math.ceil(720 / s), math.ceil(1280 / s))),
        Convention("ntire256", "LR 256×256 (NTIRE efficient SR)", lambda s: (256, 256)),
    )
}  # fmt: skip
OPS = ("fvcore", "multi_adds")


@dataclass(frozen=True)
class Complexity:
    """Counts of one model at one input size. ``per_op`` maps op names to MACs; ``uncounted`` lists the ops
    that ran but count nothing under ``ops``."""

    params: int
    params_trainable: int
    buffers: int
    macs: int
    convention: str
    ops: str
    input_size: tuple[int, int, int, int]
    per_op: dict[str, int]
    uncounted: list[str]

    @property
    def macs_g(self) -> float:
        return self.macs / 1e9


def count_params(model: nn.Module) -> dict[str, int]:
    """``params`` (all), ``params_trainable`` (requires_grad ones), ``buffers`` (buffer elements)."""
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def complexity(
    model: nn.Module, scale: int, convention: str = "hr720p", ops: str | None = None
) -> Complexity:
    """Parameters and MACs of ``model`` in eval mode (input (1, 3, h, w) from ``convention``) under ``ops``.

    ``ops`` None picks the rule of the model's paper from the model registry (``ModelSpec.counting``;
    "fvcore" for a module not built by ``architectures.build``).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {sorted(CONVENTIONS)}")
    if ops is None:
        spec = architectures.registry.spec_of(model)
        ops = "fvcore" if spec is None else spec.counting.ops
    if ops not in OPS:
        raise ValueError(f"unknown op-counting rule {ops!r}; choose one of {OPS}")
    size = (1, 3, *CONVENTIONS[convention].lr_size(scale))
    was_training = model.training
    try:
        per_op, uncounted = (fvcore_macs if ops == "fvcore" else _multi_adds)(model.eval(), size)
    finally:
        model.train(was_training)
    return Complexity(
        **count_params(model), macs=sum(per_op.values()), convention=convention, ops=ops,
        input_size=size, per_op=per_op, uncounted=uncounted,
    )  # fmt: skip


def fvcore_macs(model: nn.Module, size: tuple[int, ...]) -> tuple[dict[str, int], list[str]]:
    """The ``fvcore`` rule at input ``size`` (a zero input on the model's device): MACs per op (the registry's
    attention operators under their ``prim::PythonOp.<Function>`` names) and the ops fvcore skipped."""
    device = next(model.parameters()).device
    with counting() as calls, torch.no_grad():
        replay = _Replay(calls)
        analysis = FlopCountAnalysis(model, (torch.zeros(size, device=device),))
        for op in OPERATORS.values():
            analysis.set_op_handle(f"prim::PythonOp.{op.function_name}", replay.handle(op.function_name))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        per_op = {op: int(n) for op, n in analysis.by_operator().items()}
        uncounted = sorted(analysis.unsupported_ops())
    replay.check_all_replayed()
    return per_op, uncounted


class _Replay:
    """fvcore handles for the attention Functions: each traced node gets the MACs recorded for the same
    call (fvcore walks the finished trace in call order), checked against the traced input shapes."""

    def __init__(self, calls: list[Call]):
        self.calls, self.used = calls, Counter()

    def handle(self, name: str) -> Callable:
        def count(inputs, outputs) -> int:
            mine = [c for c in self.calls if c.op == name]
            call = mine[self.used[name]]
            self.used[name] += 1
            traced = tuple(tuple(get_shape(v)) for v in inputs)
            if traced != call.shapes:
                raise RuntimeError(
                    f"{name}: traced input shapes {traced} differ from the recorded call {call}"
                )
            return call.macs

        return count

    def check_all_replayed(self) -> None:
        if sum(self.used.values()) != len(self.calls):
            raise RuntimeError(f"{len(self.calls)} attention calls ran but {dict(self.used)} were traced")


# Ops that move or create data without arithmetic: not reported as uncounted.
_NO_ARITHMETIC = set(
    "view _unsafe_view reshape permute transpose t expand squeeze unsqueeze slice select split "
    "split_with_sizes unbind cat stack clone contiguous detach alias pixel_shuffle pixel_unshuffle "
    "constant_pad_nd copy_ _to_copy empty zeros new_zeros new_empty zeros_like empty_like full fill_ "
    "lift_fresh".split()
)


class _MultiAddsCounter(TorchDispatchMode):
    """Counts the ``multi_adds`` rule from aten ops on meta tensors; ``scope`` is the running module path."""

    def __init__(self):
        super().__init__()
        self.scope: list[str] = [""]
        self.per_op: Counter[str] = Counter()
        self.uncounted: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense":
            raise RuntimeError(
                "the multi_adds rule runs the model on the meta device, but its forward reads a tensor "
                f"value (.item()/bool(), e.g. an input check) in module {self.scope[-1]!r}; "
                "count it with ops='fvcore'"
            )
        out = func(*args, **(kwargs or {}))
        if name == "convolution":
            x, weight, bias, *_, transposed, _, groups = args
            if transposed:
                self.uncounted.add("aten::convolution (transposed)")
            else:
                self.per_op["conv"] += out.numel() * weight[0].numel()
                self.per_op["conv_bias"] += out.numel() if bias is not None else 0
        elif name == "_prelu_kernel":
            self.per_op["prelu"] += out.numel()
        elif name in ("add", "add_") and self.scope[-1] == "":
            self.per_op["residual_add"] += out.numel()
        elif name not in _NO_ARITHMETIC:
            self.uncounted.add(f"aten::{name}")
        return out


def _multi_adds(model: nn.Module, size: tuple[int, ...]) -> tuple[dict[str, int], list[str]]:
    meta_model = copy.deepcopy(model).to("meta")
    counter = _MultiAddsCounter()

    def enter(name: str) -> Callable:
        def hook(module, inputs) -> None:
            counter.scope.append(name)

        return hook

    def leave(module, inputs, output) -> None:
        counter.scope.pop()

    hooks = []
    for name, module in meta_model.named_modules():
        if name:
            hooks += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave)]
    try:
        with counting() as calls, torch.no_grad(), counter:
            meta_model(torch.zeros(size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    per_op = dict(counter.per_op)
    for call in calls:
        per_op[call.op] = per_op.get(call.op, 0) + call.macs
    return per_op, sorted(counter.uncounted)


COUNTERS = ("fvcore", "flop_counter", "registry")
AGREEMENT = 0.01  # relative gap between counters above which an op category is reported
# Each counter's op names → the category they are compared under; other names are their own category.
_CATEGORY = {
    "conv": "conv", "aten.convolution": "conv",
    "linear": "matmul", "matmul": "matmul", "bmm": "matmul", "einsum": "matmul",
    "aten.mm": "matmul", "aten.addmm": "matmul", "aten.bmm": "matmul", "aten.baddbmm": "matmul",
}  # fmt: skip


@dataclass(frozen=True)
class MacReport:
    """MACs of one forward at ``input_size`` from three counters, never silently merged.

    ``totals`` / ``per_op``: per counter (:data:`COUNTERS`) its total and its own op names: ``fvcore`` alone
    (its default handles; a registry operator is an unsupported ``prim::PythonOp`` it counts as 0),
    ``flop_counter`` (``torch.utils.flop_counter.FlopCounterMode``, FLOPs / 2), ``registry`` (the attention
    operators' ``macs()``). ``gaps``: category → counter → MACs (the registry's operators under all three
    counters, every other category under fvcore and FlopCounterMode). ``disagreement``: one line per
    category whose counters differ by more than :data:`AGREEMENT` (an op one counter does not see included).
    ``uncounted``: the ops fvcore skipped that FlopCounterMode does not name either (mostly elementwise ops,
    which neither rule counts; a fused op FlopCounterMode counts as its parts, e.g. SDPA as bmm, stays
    listed and shows as a gap).
    ``macs``: what :func:`complexity` reports under the ``fvcore`` rule (fvcore + registry).
    """

    input_size: tuple[int, ...]
    totals: dict[str, int]
    per_op: dict[str, dict[str, int]]
    gaps: dict[str, dict[str, int]]
    disagreement: list[str]
    uncounted: list[str]

    @property
    def macs(self) -> int:
        return self.totals["fvcore"] + self.totals["registry"]


def mac_report(model: nn.Module, input_size: tuple[int, ...]) -> MacReport:
    """Count one eval-mode forward of a zero ``input_size`` input with every counter (see :class:`MacReport`).

    fvcore traces a real forward on the model's device; ``FlopCounterMode`` runs a meta-device copy; the
    registry's operators run as shape-only stand-ins in both.
    """
    was_training = model.training
    try:
        fvcore_ops, skipped = fvcore_macs(model.eval(), input_size)
        counted = _flop_counter_macs(model, input_size)
    finally:
        model.train(was_training)
    registry_names = {op.function_name for op in OPERATORS.values()}
    per_op = {
        "fvcore": {
            op: n for op, n in fvcore_ops.items() if op.removeprefix("PythonOp.") not in registry_names
        },
        "flop_counter": counted["aten"],
        "registry": counted["registry"],
    }
    gaps: dict[str, dict[str, int]] = {}
    for counter, ops in per_op.items():
        for op, n in ops.items():
            category = _CATEGORY.get(op, op)
            # The registry counts its own operators only; other categories: fvcore vs FlopCounterMode.
            seen_by = COUNTERS if category in registry_names else COUNTERS[:2]
            gaps.setdefault(category, dict.fromkeys(seen_by, 0))[counter] += n
    return MacReport(
        input_size=tuple(input_size), totals={c: sum(per_op[c].values()) for c in COUNTERS}, per_op=per_op,
        gaps=gaps, disagreement=[_describe(op, n) for op, n in gaps.items() if _disagree(n)],
        uncounted=[op for op in skipped if op.replace("::", ".") not in per_op["flop_counter"]],
    )  # fmt: skip


def _flop_counter_macs(model: nn.Module, size: tuple[int, ...]) -> dict[str, dict[str, int]]:
    meta_model = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counting() as calls, torch.no_grad(), counter:
        meta_model(torch.zeros(size, device="meta"))
    aten = {str(op): int(n) // 2 for op, n in counter.get_flop_counts()["Global"].items() if n}
    registry: Counter[str] = Counter()
    for call in calls:
        registry[call.op] += call.macs
    return {"aten": aten, "registry": dict(registry)}


def _disagree(by_counter: dict[str, int]) -> bool:
    high = max(by_counter.values())
    return high > 0 and (high - min(by_counter.values())) / high > AGREEMENT


def _describe(category: str, by_counter: dict[str, int]) -> str:
    counts = ", ".join(f"{c} {n / 1e9:.4g} G" for c, n in by_counter.items())
    blind = [c for c, n in by_counter.items() if n == 0]
    why = f"; not seen by {' and '.join(blind)}" if blind else ""
    return f"{category}: {counts}{why}"
