"""Official side of the learning check for DRSAN: the released TensorFlow 1 training graph of
saturnian77/DRSAN (``ckpt/x{s}/DRSAN_{variant}/DRSAN{variant}x{s}.meta``, imported with
``tf.compat.v1.train.import_meta_graph``) run for a fixed number of updates. Imports nothing from ReproSR.

Its L1 loss ``Mean(Abs(Placeholder_1 − output))``, ``exponential_decay`` learning rate on the global step
and ``AdamOptimizer`` train op run as saved, from global step 0. Initial values: the graph's own ``init`` op
(zero biases and PReLU slopes, optimiser slots), then every conv kernel redrawn from the graph's kernel
initializer's distribution (``tf.layers.conv2d``'s Glorot-uniform: ±√(6 / (fan_in + fan_out))) with numpy
seeded by ``--seed``, since the saved initializer ops carry no seed. The repository publishes no training
data pipeline: each batch is ``--batch`` random LR patches of ``--patch`` pixels (and the matching HR)
cut from the ``HR/`` and ``LR/`` PNG pairs under ``--data``, flipped and rotated by a random multiple of
90° (the paper's augmentation), uint8 → float32 ÷ the divisor of the graph's own ``tf.data`` map function.
Writes the trained variables as a TF checkpoint (``tf.compat.v1.train.Saver``) at ``--out``.

Run: TF_USE_LEGACY_KERAS=1 python tf1_drsan.py --official CHECKOUT --variant 32s --scale 2 --data DIR
     --iters N --batch B --patch P --seed S --out PREFIX
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image


def _pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 HWC arrays of the PNG pairs HR/<name>.png, LR/<name>.png."""
    return [
        (
            np.asarray(Image.open(folder / "LR" / path.name).convert("RGB")),
            np.asarray(Image.open(path).convert("RGB")),
        )
        for path in sorted((folder / "HR").glob("*.png"))
    ]


def _batch(pairs, rng: np.random.Generator, batch: int, patch: int, scale: int) -> tuple[np.ndarray, ...]:
    """``batch`` random aligned (LR, HR) patches with a random flip and 90° rotation each, uint8 NHWC."""
    lrs, hrs = [], []
    for _ in range(batch):
        lr, hr = pairs[rng.integers(len(pairs))]
        top, left = rng.integers(lr.shape[0] - patch + 1), rng.integers(lr.shape[1] - patch + 1)
        lr = lr[top : top + patch, left : left + patch]
        hr = hr[top * scale : (top + patch) * scale, left * scale : (left + patch) * scale]
        flip, turns = rng.integers(2), rng.integers(4)
        if flip:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        lrs.append(np.rot90(lr, turns))
        hrs.append(np.rot90(hr, turns))
    return np.stack(lrs), np.stack(hrs)


def _dataset_divisor(graph) -> float:
    """The constant the graph's own tf.data map function divides the uint8 images by."""
    from tensorflow.python.framework import tensor_util

    for function in graph.as_graph_def().library.function:
        for node in function.node_def:
            if node.op == "Const" and node.name.endswith("truediv/y"):
                return float(tensor_util.MakeNdarray(node.attr["value"].tensor))
    raise SystemExit("the training graph holds no tf.data map function dividing the images")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, required=True, help="saturnian77/DRSAN checkout")
    p.add_argument("--variant", required=True)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--data", type=Path, required=True, help="folder with HR/ and LR/ PNG pairs")
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--patch", type=int, required=True, help="LR patch side")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint prefix")
    a = p.parse_args()
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    name = f"DRSAN{a.variant}x{a.scale}"
    meta = a.official / "ckpt" / f"x{a.scale}" / f"DRSAN_{a.variant}" / f"{name}.meta"
    rng = np.random.default_rng(a.seed)
    pairs = _pairs(a.data)
    graph = tf.Graph()
    with graph.as_default():
        v1.train.import_meta_graph(str(meta), clear_devices=True)
        divisor = _dataset_divisor(graph)
        train_op = graph.get_collection("train_op")[0]
        trainable = v1.trainable_variables()
        x, y = graph.get_tensor_by_name("Placeholder:0"), graph.get_tensor_by_name("Placeholder_1:0")
        loss = graph.get_tensor_by_name("Mean:0")
        saver = v1.train.Saver(trainable)
        with v1.Session(graph=graph) as sess:
            sess.run(graph.get_operation_by_name("init"))
            for v in trainable:
                shape = v.shape.as_list()
                if len(shape) == 4:  # HWIO conv kernel
                    fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[0] * shape[1] * shape[3]
                    limit = math.sqrt(6 / (fan_in + fan_out))
                    v.load(rng.uniform(-limit, limit, shape).astype(np.float32), sess)
            for t in range(1, a.iters + 1):
                lr_u8, hr_u8 = _batch(pairs, rng, a.batch, a.patch, a.scale)
                feed = {x: lr_u8.astype(np.float32) / np.float32(divisor),
                        y: hr_u8.astype(np.float32) / np.float32(divisor)}  # fmt: skip
                value, _ = sess.run([loss, train_op], feed)
                if t == 1 or t % max(1, a.iters // 4) == 0:
                    print(f"iteration {t}: loss {value:.6f}", flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            saver.save(sess, str(a.out))


if __name__ == "__main__":
    main()
