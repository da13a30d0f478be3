"""Training patches: aligned random LR/HR crops with flips and rot90, as a pure function of (seed, iteration),
and a loader that builds upcoming batches in worker processes while the model trains.

Determinism: iteration ``t`` of an epoch of ``n_images · enlarge`` samples (``iters_per_epoch = n_images ·
enlarge // global_batch``, the incomplete last batch dropped as BasicSR does) takes the slots ``[j·B,
(j+1)·B)`` of that epoch's permutation; each sample's crop and flips come from a generator seeded by (seed,
epoch, slot). Under DDP rank ``r`` of ``W`` takes the ``r``-th contiguous ``B/W`` of those samples, so W
processes see exactly the samples of one process with the same global batch, whatever the number of loader
workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class Sampling:
    """What :class:`PatchStream` needs to know: scale, HR patch side, global batch, epoch length, seed and
    augmentation."""

    scale: int
    hr_patch: int
    global_batch: int
    iters_per_epoch: int
    seed: int
    enlarge: int
    hflip: bool
    rot: bool


def to_uint8(img: Tensor) -> Tensor:
    """An 8-bit image as uint8 (float images in [0, 1] come from 8-bit PNGs, so nothing is lost)."""
    if img.dtype == torch.uint8:
        return img.contiguous()
    return (img.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


class PatchStream:
    """Aligned random patches: LR patch p×p at (y, x), HR patch s·p×s·p at (s·y, s·x), same flips/rot90.

    ``pairs`` are (hr, lr) uint8 tensors, or float ones in [0, 1] kept as uint8 (they come from 8-bit PNGs).
    """

    def __init__(self, pairs: Sequence[tuple[Tensor, Tensor]], sampling: Sampling):
        self.hr = [to_uint8(hr) for hr, _ in pairs]
        self.lr = [to_uint8(lr) for _, lr in pairs]
        self.sampling = sampling
        s = sampling.scale
        self.lr_patch = sampling.hr_patch // s
        for i, (hr, lr) in enumerate(zip(self.hr, self.lr, strict=True)):
            if tuple(hr.shape[-2:]) != (lr.shape[-2] * s, lr.shape[-1] * s):
                raise ValueError(
                    f"training pair {i}: HR {tuple(hr.shape)} is not ×{s} of LR {tuple(lr.shape)}"
                )
            if min(lr.shape[-2:]) < self.lr_patch:
                raise ValueError(
                    f"training pair {i}: LR {tuple(lr.shape)} is smaller than the {self.lr_patch}-pixel patch"
                )
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            n = len(self.hr) * self.sampling.enlarge
            self._epoch, self._perm = epoch, np.random.default_rng([self.sampling.seed, epoch]).permutation(n)
        return self._perm

    def sample(self, epoch: int, slot: int) -> tuple[Tensor, Tensor]:
        image = int(self._permutation(epoch)[slot]) % len(self.hr)
        rng = np.random.default_rng([self.sampling.seed, epoch, slot])
        lr, hr, p, s = self.lr[image], self.hr[image], self.lr_patch, self.sampling.scale
        y = int(rng.integers(0, lr.shape[-2] - p + 1))
        x = int(rng.integers(0, lr.shape[-1] - p + 1))
        lr = lr[:, y : y + p, x : x + p]
        hr = hr[:, s * y : s * (y + p), s * x : s * (x + p)]
        hflip, vflip, rot90 = (rng.random(3) < 0.5) & np.array(
            [self.sampling.hflip, self.sampling.rot, self.sampling.rot]
        )
        if hflip:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if vflip:
            lr, hr = lr.flip(-2), hr.flip(-2)
        if rot90:
            lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
        return lr, hr

    def batch(self, iteration: int, rank: int = 0, world: int = 1) -> tuple[Tensor, Tensor]:
        """This rank's share of the global batch of ``iteration``: LR (b, 3, p, p), HR (b, 3, s·p, s·p)."""
        g = self.sampling.global_batch
        b = g // world
        epoch, j = divmod(iteration, self.sampling.iters_per_epoch)
        slots = range(j * g + rank * b, j * g + (rank + 1) * b)
        lrs, hrs = zip(*(self.sample(epoch, k) for k in slots), strict=True)
        return torch.stack(lrs).float() / 255, torch.stack(hrs).float() / 255


class _Batches(Dataset):
    """Map-style view: item ``t`` is this rank's batch of iteration ``t``."""

    def __init__(self, stream: PatchStream, rank: int, world: int):
        self.stream, self.rank, self.world = stream, rank, world

    def __len__(self) -> int:  # not used for sampling (the sampler is the iteration range)
        return 2**62

    def __getitem__(self, t: int) -> tuple[Tensor, Tensor]:
        return self.stream.batch(t, self.rank, self.world)


def batches(
    stream: PatchStream,
    start: int,
    stop: int,
    *,
    rank: int = 0,
    world: int = 1,
    workers: int = 2,
    pin: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of iterations ``start … stop-1`` in order, built by ``workers`` processes ahead of use (0: on
    the calling thread); ``pin`` page-locks them for asynchronous copies to a GPU."""
    loader = DataLoader(
        _Batches(stream, rank, world),
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator(),  # its base-seed draw must not advance the training RNG (resume)
    )
    return iter(loader)
