"""Write the step-level training-equivalence fixtures with each family's OFFICIAL training code.

Not part of the product and not run by the tests. It runs the official trainer from a scratch checkout
OUTSIDE this repository (nothing official is imported from the repository) and imports nothing from
ReproSR, so the fixture is the official code's word alone::

    python make_fixtures.py span_esr --official /scratch/hongyuanyu+SPAN --commit <sha> --out span_esr/
    python make_fixtures.py span_light --official /scratch/zononhzy+SPAN --commit <sha> --out span_light/
    python make_fixtures.py hspan --official /scratch/laoyangui+HSPAN --commit <sha> --out hspan/
    TF_USE_LEGACY_KERAS=1 venv/bin/python make_fixtures.py drsan --official /scratch/saturnian77+DRSAN \
        --commit <sha> --out drsan/

Each family: a FIXED initial state (the official module's own seeded initialisation, saved in full; for
DRSAN's full-size graph a formula, :func:`formula_init`), a fixed sequence of k batches (uint8 RGB, saved),
and the official trainer's k updates, after each of which the loss, the learning rate and a digest of every
tensor (float64 sum, L2 norm and a projection on a fixed pseudo-random vector, see :func:`digest`) of the
trained weights (and of the EMA when the trainer keeps one) are recorded. ``fixture.pt`` holds the
tensors, ``meta.json`` the settings, the official commit and the per-step losses and learning rates.

Shims (here only, never in the product): BasicSR's package ``__init__`` imports every module, some of which
need torchvision or compiled ops; the packages ``basicsr``, ``basicsr.models`` and ``basicsr.metrics`` are
therefore entered without running their ``__init__`` and the few unused imports (torchvision, deformable
convolution, VGG, fvcore) are stubbed; batches reach ``SRModel.feed_data`` through BasicSR's own image
decoding (PNG bytes → ``imfrombytes`` → ``img2tensor``), as its ``PairedImageDataset`` makes them.
EDSR-PyTorch's ``Trainer`` is driven with a list of batches as its loader and a stand-in for its
``checkpoint`` logger; the official ``Model``, ``Loss`` and ``make_optimizer`` run as they are.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import types
from pathlib import Path

import numpy as np
import torch

PHI = (math.sqrt(5) - 1) / 2


def digest(t) -> list[float]:
    """(sum, L2 norm, Σ x_i·c_i) in float64 with c_i = frac(i·φ) − ½: a sign flip, a permutation or a
    change of scale of a tensor all move it."""
    x = torch.as_tensor(t).detach().double().flatten()
    c = torch.arange(x.numel(), dtype=torch.float64).mul(PHI).frac().sub(0.5)
    return [x.sum().item(), x.norm().item(), (x * c).sum().item()]


def uint8_batches(seed: int, k: int, batch: int, lr_side: int, scale: int):
    """k random (LR, HR) uint8 batches, NCHW."""
    rng = np.random.default_rng(seed)
    lr = rng.integers(0, 256, (k, batch, 3, lr_side, lr_side), dtype=np.uint8)
    hr = rng.integers(0, 256, (k, batch, 3, lr_side * scale, lr_side * scale), dtype=np.uint8)
    return lr, hr


# ------------------------------------------------------------------------------------------ BasicSR


def import_basicsr(root: Path):
    """BasicSR's ``SRModel`` from the checkout at ``root``, without the package ``__init__`` files."""
    if "basicsr.models.sr_model" in sys.modules:
        return sys.modules["basicsr.models.sr_model"].SRModel

    def stub(name: str, path: Path | None = None, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        if path is not None:
            module.__path__ = [str(path)]
        sys.modules[name] = module
        return module

    try:
        import torchvision  # noqa: F401
    except ImportError:  # used by image writing, VGG and the deformable conv only
        stub("torchvision", __version__="0.0.0", __path__=[])
        stub("torchvision.utils", make_grid=None)
        stub("torchvision.models", vgg=None)
    try:
        import fvcore.nn  # noqa: F401
    except ImportError:  # zononhzy/SPAN's span_arch.py imports it for its __main__ only
        stub("fvcore", __path__=[])
        stub("fvcore.nn", FlopCountAnalysis=None, flop_count_table=None)
    pkg = root / "basicsr"
    stub("basicsr", pkg)
    stub("basicsr.models", pkg / "models")
    stub("basicsr.metrics", pkg / "metrics", calculate_metric=None)  # validation only
    stub("basicsr.ops", pkg / "ops")
    stub("basicsr.ops.dcn", ModulatedDeformConvPack=object, modulated_deform_conv=None)
    if not (pkg / "archs" / "vgg_arch.py").exists():  # hongyuanyu/SPAN ships basic_loss.py without it
        stub("basicsr.archs.vgg_arch", VGGFeatureExtractor=object)
    from basicsr.models.sr_model import SRModel

    return SRModel


def paired_dataset_tensors(batch_u8) -> torch.Tensor:
    """A uint8 RGB batch (B, 3, h, w) as BasicSR's PairedImageDataset makes it from PNG files: the official
    ``imfrombytes(float32=True)`` (cv2 decode, ÷ 255.) and ``img2tensor(bgr2rgb=True)`` on each image."""
    import cv2
    from basicsr.utils.img_util import imfrombytes, img2tensor

    images = []
    for rgb in batch_u8:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1]))
        assert ok
        images.append(img2tensor(imfrombytes(png.tobytes(), float32=True), bgr2rgb=True, float32=True))
    return torch.stack(images)


def basicsr_run(root: Path, network: dict, settings: dict, init: dict, lr_u8, hr_u8, out: Path) -> dict:
    """k updates of BasicSR's SRModel (its train.py order: update_learning_rate(current_iter) then
    feed_data + optimize_parameters), recording loss, lr and digests after each."""
    SRModel = import_basicsr(root)
    weights = out / "init.pth"
    torch.save({"params": init, "params_ema": init}, weights)
    opt = {
        "is_train": True,
        "num_gpu": 0,
        "dist": False,
        "network_g": network,
        "path": {"pretrain_network_g": str(weights), "strict_load_g": True},
        "train": {
            "ema_decay": settings["ema_decay"],
            "optim_g": {
                "type": "Adam",
                "lr": settings["lr"],
                "weight_decay": settings["weight_decay"],
                "betas": settings["betas"],
            },
            "scheduler": {
                "type": "MultiStepLR",
                "milestones": settings["milestones"],
                "gamma": settings["gamma"],
            },
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
    }
    model = SRModel(opt)
    weights.unlink()
    if "rng_seed" in settings:  # stochastic depth draws from the global torch RNG during the updates
        torch.manual_seed(settings["rng_seed"])
    steps = {"loss": [], "lr": [], "model": [], "ema": []}
    for current_iter in range(1, len(lr_u8) + 1):
        model.update_learning_rate(current_iter, warmup_iter=-1)
        steps["lr"].append(model.get_current_learning_rate()[0])
        t = current_iter - 1
        model.feed_data({"lq": paired_dataset_tensors(lr_u8[t]), "gt": paired_dataset_tensors(hr_u8[t])})
        model.optimize_parameters(current_iter)
        steps["loss"].append(float(model.log_dict["l_pix"]))
        steps["model"].append({k: digest(v) for k, v in model.net_g.state_dict().items()})
        steps["ema"].append({k: digest(v) for k, v in model.net_g_ema.state_dict().items()})
    return steps


def span_esr(args) -> None:
    import_basicsr(args.official)
    from basicsr.archs.span_arch import SPAN

    settings = {
        "scale": 4,
        "feature_channels": 4,
        "k": 5,
        "batch": 2,
        "lr_side": 8,
        "lr": 5e-4,
        "betas": [0.9, 0.99],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "milestones": [2, 4],
        "gamma": 0.5,
        "ema_decay": 0.9,
        "grad_clip": 0.0,
    }
    network = {"type": "SPAN", "num_in_ch": 3, "num_out_ch": 3, "upscale": 4, "feature_channels": 4}
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in SPAN(3, 3, feature_channels=4, upscale=4).state_dict().items()}
    run_basicsr_family(args, "SPAN (SPAN-ESR)", network, settings, init)


def span_light(args) -> None:
    """SPAN-light (zononhzy/SPAN, its own BasicSR copy): one group of 2 blocks, 12 channels, 2 heads, the
    published 12×12 windows overlapping by 3 and stochastic depth 0.1 (the class default, drawn from the
    torch RNG seeded with ``rng_seed`` right before the first update). LR 16×16 is reflect-padded to 21."""
    import_basicsr(args.official)
    from basicsr.archs.span_arch import SPAN

    settings = {
        "scale": 2, "k": 5, "batch": 2, "lr_side": 16, "lr": 5e-4, "betas": [0.9, 0.99], "eps": 1e-8,
        "weight_decay": 0.0, "milestones": [2, 4], "gamma": 0.5, "ema_decay": 0.9, "grad_clip": 0.0,
        "rng_seed": 1,
    }  # fmt: skip
    network = {
        "type": "SPAN", "upscale": 2, "in_chans": 3, "img_size": 64, "window_size": 12, "overlap_size": 3,
        "padding_size": 0, "img_range": 1.0, "depths": [2], "embed_dim": 12, "num_heads": [2],
        "mlp_ratio": 2, "drop_path_rate": 0.1, "upsampler": "pixelshuffledirect", "resi_connection": "1conv",
    }  # fmt: skip
    torch.manual_seed(0)
    kwargs = {k: v for k, v in network.items() if k != "type"}
    init = {k: v.clone() for k, v in SPAN(**kwargs).state_dict().items()}
    run_basicsr_family(args, "SPAN (SPAN-light)", network, settings, init)


def run_basicsr_family(args, arch: str, network: dict, settings: dict, init: dict) -> None:
    lr_u8, hr_u8 = uint8_batches(args.seed, settings["k"], settings["batch"], settings["lr_side"],
                                 settings["scale"])  # fmt: skip
    steps = basicsr_run(args.official, network, settings, init, lr_u8, hr_u8, args.out)
    meta = {"architecture": arch, "network": network}
    save(args, init, lr_u8, hr_u8, settings, steps, meta)


def save(
    args, init: dict, lr_u8, hr_u8, settings: dict, steps: dict, meta: dict, store_init: bool = True
) -> None:
    """``fixture.pt``: the initial state flattened into one float32 vector (names and shapes in meta.json),
    the uint8 batches, and the (k, tensors, 3) float64 digests of the weights (and EMA) after each step;
    packed into a few tensors so that the zip holds a handful of records."""
    names = list(init)
    tensors = {
        "lr": torch.from_numpy(lr_u8),
        "hr": torch.from_numpy(hr_u8),
        "model": torch.tensor([[s[k] for k in names] for s in steps["model"]], dtype=torch.float64),
    }
    if store_init:
        tensors["init"] = torch.cat([init[k].detach().float().flatten() for k in names])
    if steps.get("ema"):
        tensors["ema"] = torch.tensor([[s[k] for k in names] for s in steps["ema"]], dtype=torch.float64)
    torch.save(tensors, args.out / "fixture.pt")
    meta = {
        "official": {"repository": args.repository, "commit": args.commit, "trainer": args.trainer},
        **meta,
        "settings": settings,
        "batch_seed": args.seed,
        "loss": steps["loss"],
        "lr": steps["lr"],
        "tensors": [[k, list(init[k].shape)] for k in names],
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ EDSR-PyTorch


class _Checkpoint:
    """Stand-in for EDSR-PyTorch's ``utility.checkpoint`` (a logger and a folder): the trainer only logs."""

    def __init__(self, folder: Path):
        self.dir = str(folder)
        self.log_file = open(folder / "log.txt", "w")  # noqa: SIM115

    def write_log(self, text: str, refresh: bool = False) -> None:
        print(text, file=self.log_file)


class _Loader:
    """EDSR-PyTorch's ``loader_train`` for a fixed sequence: each pass yields the next epoch's batches as
    ``(lr, hr, filenames)``, made by the official ``data.common.np2Tensor`` (HWC uint8 → CHW float ×
    rgb_range/255)."""

    def __init__(self, lr_u8, hr_u8, per_epoch: int, rgb_range: int):
        from data import common  # the official EDSR-PyTorch data module

        def tensors(u8) -> torch.Tensor:
            return torch.stack([common.np2Tensor(x.transpose(1, 2, 0), rgb_range=rgb_range)[0] for x in u8])

        self.batches = [
            (tensors(lr), tensors(hr), ["fixed"] * len(lr)) for lr, hr in zip(lr_u8, hr_u8, strict=True)
        ]
        self.per_epoch, self.epoch = per_epoch, 0
        self.dataset = types.SimpleNamespace(set_scale=lambda idx: None, __len__=lambda: per_epoch)

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        start = self.epoch * self.per_epoch
        self.epoch += 1
        return iter(self.batches[start : start + self.per_epoch])


def hspan(args) -> None:
    """EDSR-PyTorch's Trainer.train() for 3 epochs of 2 batches with the official option parser, Model, Loss
    and make_optimizer; the epoch-wise MultiStepLR halves the rate after epochs 1 and 2.

    ``--epochs 4``: ``Trainer.terminate`` stops once ``scheduler.last_epoch + 1 >= epochs``, so the official
    loop trains ``epochs − 1`` epochs. ``main.py``'s ``t.test()`` between epochs only validates: left out.
    """
    sys.path.insert(0, str(args.official / "src"))
    for name in ("torchvision", "torchvision.transforms", "torchvision.utils"):  # imported, never used
        sys.modules.setdefault(name, types.ModuleType(name))
    settings = {
        "scale": 2, "n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 2, "topk": 16,
        "res_scale": 0.1, "rgb_range": 1, "k": 6, "batch": 2, "lr_side": 10, "unit": "epoch",
        "iters_per_epoch": 2, "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
        "milestones": [1, 2], "gamma": 0.5, "ema_decay": 0.0, "grad_clip": 0.002,
    }  # fmt: skip
    init_path = args.out / "init.pt"
    sys.argv = ["main.py", "--cpu", "--model", "HSPAN", "--scale", str(settings["scale"]),
                "--rgb_range", str(settings["rgb_range"]), "--n_resgroups", str(settings["n_resgroups"]),
                "--n_resblocks", str(settings["n_resblocks"]), "--n_feats", str(settings["n_feats"]),
                "--reduction", str(settings["reduction"]), "--topk", str(settings["topk"]),
                "--res_scale", str(settings["res_scale"]), "--lr", str(settings["lr"]),
                "--decay", "-".join(map(str, settings["milestones"])), "--gamma", str(settings["gamma"]),
                "--gclip", str(settings["grad_clip"]), "--batch_size", str(settings["batch"]),
                "--patch_size", str(settings["lr_side"] * settings["scale"]), "--epochs", "4",
                "--pre_train", str(init_path), "--save", "equivalence"]  # fmt: skip
    import loss as official_loss
    import model as official_model
    from model.hspan import HSPAN
    from option import args as official_args  # the official parser: betas, epsilon, loss 1*L1, ADAM
    from trainer import Trainer

    assert tuple(official_args.betas) == tuple(settings["betas"]) and official_args.epsilon == settings["eps"]
    assert official_args.loss == "1*L1" and official_args.optimizer == "ADAM"
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in HSPAN(official_args).state_dict().items()}
    torch.save(init, init_path)
    ckp = _Checkpoint(args.out)
    net = official_model.Model(official_args, ckp)  # loads --pre_train
    init_path.unlink()
    lr_u8, hr_u8 = uint8_batches(args.seed, settings["k"], settings["batch"], settings["lr_side"],
                                 settings["scale"])  # fmt: skip
    train = _Loader(lr_u8, hr_u8, settings["iters_per_epoch"], settings["rgb_range"])
    loader = types.SimpleNamespace(loader_train=train, loader_test=[])
    trainer = Trainer(official_args, loader, net, official_loss.Loss(official_args, ckp), ckp)
    steps = {"loss": [], "lr": [], "model": []}
    forward, step = trainer.loss.forward, trainer.optimizer.step

    def recording_forward(sr, hr):  # observes the official loss, changes nothing
        value = forward(sr, hr)
        steps["loss"].append(value.item())
        steps["lr"].append(trainer.optimizer.param_groups[0]["lr"])
        return value

    def recording_step(*a, **kw):
        result = step(*a, **kw)
        steps["model"].append({k: digest(v) for k, v in net.state_dict().items()})
        return result

    trainer.loss.forward, trainer.optimizer.step = recording_forward, recording_step
    while not trainer.terminate():
        trainer.train()
    ckp.log_file.close()
    (args.out / "log.txt").unlink()
    assert len(steps["loss"]) == settings["k"], f"{len(steps['loss'])} steps, not {settings['k']}"
    command = " ".join(sys.argv[1:]).replace(str(init_path), "init.pt")
    meta = {"architecture": "HSPAN", "official_args": command}
    save(args, init, lr_u8, hr_u8, settings, steps, meta)


# ------------------------------------------------------------------------------------------ DRSAN (TF1)


def formula_init(variables: list[tuple[str, list[int]]]) -> dict[str, np.ndarray]:
    """A fixed initial state for the full-size model without storing it (368k values): tensor j takes
    u_i = frac(i·φ + j·√2) − ½ (float64, then float32); conv kernels (HWIO) 2·u·√(6/(fan_in + fan_out))
    (Glorot-uniform's range), biases 0.1·u, PReLU slopes 0.1 + 0.1·u."""
    arrays = {}
    for j, (name, shape) in enumerate(variables):
        u = np.modf(np.arange(math.prod(shape), dtype=np.float64) * PHI + j * math.sqrt(2))[0] - 0.5
        if len(shape) == 4:
            value = 2 * u * math.sqrt(6 / (shape[0] * shape[1] * (shape[2] + shape[3])))
        elif "alpha" in name:
            value = 0.1 + 0.1 * u
        else:
            value = 0.1 * u
        arrays[name] = value.reshape(shape).astype(np.float32)
    return arrays


def drsan(args) -> None:
    """The released TF1 TRAINING graph of DRSAN 32s ×2 (``ckpt/x2/DRSAN_32s/DRSAN32sx2.meta``, imported
    with ``tf.compat.v1.train.import_meta_graph``): its L1 loss ``Mean(Abs(Placeholder_1 − output))``, its
    ``exponential_decay`` learning rate on the int32 global step and its ``AdamOptimizer`` train op run as
    saved. Weights come from :func:`formula_init`; the global step starts at 199998 so that the staircase
    halving at 200000 falls at the third of k = 5 updates. Batches are fed to the graph's placeholders as
    its own tf.data map function makes them (uint8 → float32 ÷ the function's ``truediv/y``)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    meta_path = args.official / "ckpt" / "x2" / "DRSAN_32s" / "DRSAN32sx2.meta"
    graph = tf.Graph()
    with graph.as_default():
        v1.train.import_meta_graph(str(meta_path), clear_devices=True)
        consts = _graph_constants(graph)
        divisor = _dataset_divisor(graph)
        train_op = graph.get_collection("train_op")[0]
        trainable = v1.trainable_variables()
        variables = [(v.op.name, v.shape.as_list()) for v in trainable]
        init = formula_init(variables)
        settings = {
            "scale": 2, "variant": "32s", "k": 5, "batch": 2, "lr_side": 12,
            "lr": consts["ExponentialDecay/learning_rate"],
            "betas": [consts["AdamOptimizer/beta1"], consts["AdamOptimizer/beta2"]],
            "eps": consts["AdamOptimizer/epsilon"], "weight_decay": 0.0, "milestones": [2],
            "gamma": consts["ExponentialDecay/Cast_1/x"], "ema_decay": 0.0, "grad_clip": 0.0,
        }  # fmt: skip
        step_variable = graph.get_tensor_by_name("Variable:0")
        decay_steps = int(consts["ExponentialDecay/Cast/x"])
        lr_u8, hr_u8 = uint8_batches(args.seed, settings["k"], settings["batch"], settings["lr_side"],
                                     settings["scale"])  # fmt: skip
        x = graph.get_tensor_by_name("Placeholder:0")
        y = graph.get_tensor_by_name("Placeholder_1:0")
        loss = graph.get_tensor_by_name("Mean:0")
        rate = graph.get_tensor_by_name("ExponentialDecay:0")
        steps = {"loss": [], "lr": [], "model": []}
        with v1.Session(graph=graph) as sess:
            sess.run(graph.get_operation_by_name("init"))
            for v in trainable:
                v.load(init[v.op.name], sess)
            v1.Variable.load(_variable(graph, "Variable"), decay_steps - 2, sess)
            for t in range(settings["k"]):
                feed = {
                    x: lr_u8[t].transpose(0, 2, 3, 1).astype(np.float32) / np.float32(divisor),
                    y: hr_u8[t].transpose(0, 2, 3, 1).astype(np.float32) / np.float32(divisor),
                }
                value, lr_now, _ = sess.run([loss, rate, train_op], feed)
                steps["loss"].append(float(value))
                steps["lr"].append(float(lr_now))
                values = zip(trainable, sess.run(trainable), strict=True)
                steps["model"].append({v.op.name: digest(a) for v, a in values})
            assert sess.run(step_variable) == decay_steps - 2 + settings["k"]
    meta = {
        "architecture": "DRSAN 32s x2 (released training graph)",
        "graph": str(meta_path.relative_to(args.official)),
        "init": "formula_init (make_fixtures.py) over the graph's trainable variables, in TF layout",
        "global_step_start": decay_steps - 2,
        "graph_constants": consts,
        "dataset_divisor": divisor,
        "tensorflow": tf.__version__,
    }
    save(args, {k: torch.from_numpy(v) for k, v in init.items()}, lr_u8, hr_u8, settings, steps, meta,
         store_init=False)  # fmt: skip


def _variable(graph, name: str):
    import tensorflow as tf

    return next(v for v in tf.compat.v1.global_variables() if v.op.name == name)


def _graph_constants(graph) -> dict[str, float]:
    """The scalar Consts of the graph's optimiser and learning-rate schedule."""
    from tensorflow.python.framework import tensor_util

    wanted = (
        "AdamOptimizer/beta1", "AdamOptimizer/beta2", "AdamOptimizer/epsilon",
        "ExponentialDecay/learning_rate", "ExponentialDecay/Cast/x", "ExponentialDecay/Cast_1/x",
    )  # fmt: skip
    return {
        name: float(tensor_util.MakeNdarray(graph.get_operation_by_name(name).get_attr("value")))
        for name in wanted
    }


def _dataset_divisor(graph) -> float:
    """The ``truediv/y`` constant of the graph's tf.data map function (uint8 → float ÷ y), which must be
    the same for the input and the label."""
    from tensorflow.python.framework import tensor_util

    values = set()
    for function in graph.as_graph_def().library.function:
        for node in function.node_def:
            if node.op == "Const" and node.name in ("truediv/y", "truediv_1/y"):
                values.add(float(tensor_util.MakeNdarray(node.attr["value"].tensor)))
    assert len(values) == 1, values
    return values.pop()


# ------------------------------------------------------------------------------------------ main

FAMILIES = {
    "span_esr": (span_esr, "hongyuanyu/SPAN", "basicsr/models/sr_model.py SRModel (BasicSR 1.4.2 copy)"),
    "drsan": (drsan, "saturnian77/DRSAN", "ckpt/x2/DRSAN_32s/DRSAN32sx2.meta (the saved TF1 training graph)"),
    "span_light": (span_light, "zononhzy/SPAN", "basicsr/models/sr_model.py SRModel (its BasicSR copy)"),
    "hspan": (hspan, "laoyangui/HSPAN", "src/trainer.py Trainer.train (EDSR-PyTorch), src/main.py order"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--official", type=Path, required=True, help="scratch checkout of the official repo")
    parser.add_argument("--commit", required=True, help="the official commit checked out in --official")
    parser.add_argument("--out", type=Path, required=True, help="folder for fixture.pt and meta.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random uint8 batches")
    args = parser.parse_args()
    make, args.repository, args.trainer = FAMILIES[args.family]
    args.official = args.official.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.official))
    make(args)


if __name__ == "__main__":
    main()
