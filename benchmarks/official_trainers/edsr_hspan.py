"""Official side of the learning check for HSPAN: laoyangui/HSPAN's EDSR-PyTorch training code, run as its
``main.py`` would run it, for a fixed number of iterations. Imports nothing from ReproSR.

The checkout's own option parser (``option.args``), DIV2K data loader (``data.Data``: random patches,
flips and rotations, ``np2Tensor`` with ``--rgb_range``), ``model.Model``, ``loss.Loss`` and
``Trainer.train()`` (Adam from ``utility.make_optimizer``, ``--gclip``) train on ``--data``, a folder in
EDSR-PyTorch's DIV2K layout (``DIV2K/DIV2K_train_HR/0001.png``,
``DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png``).
One epoch of exactly ``--iters`` batches is trained (``--test_every`` sets the epoch length; ``main.py``'s
``t.test()`` only validates and is not run); the raw weights are written with ``torch.save`` as the
model's ``state_dict`` (EDSR-PyTorch's own ``model_latest.pt`` layout).

Run: python edsr_hspan.py --official CHECKOUT --data DIR --out FILE.pt --seed S -- <main.py flags>
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

import torch


class _Checkpoint:
    """Stand-in for EDSR-PyTorch's ``utility.checkpoint`` (a logger and an experiment folder): during
    ``Trainer.train()`` it only logs, here to stdout."""

    def __init__(self, folder: Path):
        self.dir = str(folder)
        self.log_file = open(os.devnull, "w")  # noqa: SIM115 (Model prints the whole network into it)

    def write_log(self, text: str, refresh: bool = False) -> None:
        print(text, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, required=True, help="laoyangui/HSPAN checkout")
    p.add_argument("--data", type=Path, required=True, help="folder holding DIV2K/ in EDSR-PyTorch's layout")
    p.add_argument("--out", type=Path, required=True, help="where the raw weights go (.pt)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("flags", nargs=argparse.REMAINDER, help="main.py flags after --")
    a = p.parse_args()
    images = len(list((a.data / "DIV2K" / "DIV2K_train_HR").glob("*.png")))
    # SRData repeats the images batch·test_every // images times per epoch: an epoch of exactly `iters`
    # batches when batch·iters is a multiple of the image count (checked below)
    flags = a.flags[1:] if a.flags[:1] == ["--"] else a.flags
    sys.argv = ["main.py", "--cpu", "--dir_data", str(a.data), "--data_train", "DIV2K", "--data_test",
                "DIV2K", "--data_range", f"1-{images}/1-{images}", "--ext", "img", "--n_threads", "0",
                "--batch_size", str(a.batch), "--test_every", str(a.iters), "--epochs", "2",
                "--seed", str(a.seed), "--print_every", str(max(1, a.iters // 4)), *flags]  # fmt: skip
    sys.path.insert(0, str(a.official / "src"))
    for name in ("torchvision", "torchvision.transforms", "torchvision.utils"):  # imported, never used
        sys.modules.setdefault(name, types.ModuleType(name))
    import data as official_data
    import loss as official_loss
    import model as official_model
    from option import args
    from trainer import Trainer

    torch.manual_seed(args.seed)  # as main.py does
    ckp = _Checkpoint(a.out.parent)
    loader = official_data.Data(args)
    batches = len(loader.loader_train)
    if batches != a.iters:
        raise SystemExit(
            f"an epoch has {batches} batches, not {a.iters}: use a batch·iters divisible by {images}"
        )
    net = official_model.Model(args, ckp)
    trainer = Trainer(args, loader, net, official_loss.Loss(args, ckp), ckp)
    trainer.train()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.model.state_dict(), a.out)


if __name__ == "__main__":
    main()
