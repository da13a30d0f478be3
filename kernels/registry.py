"""The one registry of attention operators: what a model calls, and how each call is counted.

Models call an operator through its registry entry (``operator("soft_threshold")(q, k, v)``), which runs
the kernel module's public function. Inside :func:`counting` (a context variable: this thread and task
only, no class is patched) the same call instead runs a shape-only stand-in — an autograd Function with
the kernel's Function's name, so a jit trace still shows ``prim::PythonOp.<Name>`` — that returns zeros of
the output's shape and records the call's MACs from the kernel module's ``macs()`` helper. So
``harness.complexity`` counts HSPAN's N×N attention without computing it, on any device, the meta device
included.

A new operator registers one :class:`Operator` (``docs/adding-a-paper.md``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor

from kernels import sliding_proxy, soft_threshold


@dataclass(frozen=True)
class Call:
    """One operator call seen while :func:`counting`: the shapes of its tensor arguments and its MACs."""

    op: str
    shapes: tuple[tuple[int, ...], ...]
    macs: int


@dataclass(frozen=True)
class Operator:
    """An attention operator.

    ``function``: the public entry point (input checks, then the kernel's autograd Function).
    ``function_name``: that autograd Function's class name, which jit traces show.
    ``macs``: MACs of one call from the call's arguments (positional, in ``function``'s order).
    ``output``: zeros shaped like the call's output, from the same arguments.
    """

    name: str
    function: Callable[..., Tensor]
    function_name: str
    macs: Callable[..., int]
    output: Callable[..., Tensor]
    _signature: inspect.Signature = field(init=False, repr=False, compare=False)
    _stand_in: type[torch.autograd.Function] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_signature", inspect.signature(self.function))
        object.__setattr__(self, "_stand_in", _stand_in(self))

    def __call__(self, *args, **kwargs) -> Tensor:
        calls = _COUNTING.get()
        if calls is None:
            return self.function(*args, **kwargs)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return self._stand_in.apply(*bound.arguments.values())


def _stand_in(op: Operator) -> type[torch.autograd.Function]:
    def forward(ctx, *args):
        tensors = [a for a in args if isinstance(a, Tensor)]
        _COUNTING.get().append(Call(op.function_name, shapes(*tensors), int(op.macs(*args))))
        return op.output(*args)

    return type(op.function_name, (torch.autograd.Function,), {"forward": staticmethod(forward)})


def shapes(*tensors: Tensor) -> tuple[tuple[int, ...], ...]:
    """Shapes as plain ints (under a jit trace, sizes are traced 0-dim tensors)."""
    return tuple(tuple(int(n) for n in t.shape) for t in tensors)


OPERATORS: dict[str, Operator] = {}
_COUNTING: ContextVar[list[Call] | None] = ContextVar("kernels_counting", default=None)


def register_operator(op: Operator) -> Operator:
    if op.name in OPERATORS:
        raise ValueError(f"operator {op.name!r} is registered twice")
    OPERATORS[op.name] = op
    return op


def operator(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; registered operators: {', '.join(OPERATORS)}") from None


@contextmanager
def counting() -> Iterator[list[Call]]:
    """Within this block, registered operators run shape-only stand-ins and record their calls (outputs are
    zeros: for counting only)."""
    calls: list[Call] = []
    token = _COUNTING.set(calls)
    try:
        yield calls
    finally:
        _COUNTING.reset(token)


def _soft_threshold_macs(q: Tensor, k: Tensor, v: Tensor, *options) -> int:
    (b, n, d), (_, m, dv) = shapes(q, v)
    return soft_threshold.macs(b, n, m, d, dv)


def _sliding_proxy_macs(q: Tensor, k, v, temperature, rel_bias, window_size: int, overlap: int) -> int:
    b, heads, d, h, w = shapes(q)[0]
    return sliding_proxy.macs(b, heads, d, h, w, window_size, overlap)


register_operator(
    Operator(
        "soft_threshold",
        soft_threshold.soft_threshold_attention,
        soft_threshold.SoftThresholdAttentionFunction.__name__,
        _soft_threshold_macs,
        lambda q, k, v, *options: q.new_zeros(*shapes(q)[0][:2], shapes(v)[0][2]),
    )
)
register_operator(
    Operator(
        "sliding_proxy",
        sliding_proxy.sliding_proxy_attention,
        sliding_proxy.SlidingProxyAttentionFunction.__name__,
        _sliding_proxy_macs,
        lambda q, k, v, *rest: v.new_zeros(shapes(v)[0]),
    )
)
