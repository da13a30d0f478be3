"""Write the DRSAN TensorFlow fixtures (drsan_tf_fixtures.tar.xz) with TensorFlow and the official model code.

Not part of the product and not run by the tests: it needs TensorFlow (with tf_keras for ``tf.layers``) and
the official DRSAN code (model.py, ops.py of github.com/saturnian77/DRSAN), e.g.::

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras imageio
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python tests/architectures/data/make_tf_fixtures.py \
        --official /path/to/DRSAN --out tests/architectures/data/drsan_tf_fixtures.tar.xz

For each fixture the official ``model.DRSAN32``/``DRSAN48`` graph is built through ``tf.compat.v1``: three
with one DRAG (``len=1``; the official classes take the number of DRAGs as an argument, width and units per
DRAG are fixed by the class) so that the files stay small, and the full 32s ×2. Weights are random
(seeded), rounded to multiples of 1/256 so that the archive compresses; PReLU slopes and biases are made
non-zero. An ``AdamOptimizer`` (named "AdamOptimizer", as in the released checkpoints) takes two steps on a
few variables and an int32 global step is saved, so the checkpoint carries optimizer slots, beta powers and
a step, as the releases do.
``tf.compat.v1.train.Saver`` writes the checkpoint (V2 tensor bundle + ``checkpoint`` file); the official
graph's output for a fixed input is saved beside it (``input.npy``, ``output.npy``, NHWC). A last fixture,
``sharded/``, holds two shards and the other dtypes (see :func:`write_sharded`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

FIXTURES = {  # name → (official class, len, scale string)
    "drsan32_k1_x2": ("DRSAN32", 1, "x2"),
    "drsan48_k1_x3": ("DRSAN48", 1, "x3"),
    "drsan32_k1_x4": ("DRSAN32", 1, "x4"),
    "drsan32s_x2": ("DRSAN32", 4, "x2"),  # the released 32s ×2 configuration, full size
}


def write_fixture(tf, model, name: str, cls: str, length: int, scale: str, out: Path, seed: int) -> dict:
    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, None, None, 3])
        net = getattr(model, cls)(x, length, scale)
        step = v1.Variable(0, dtype=tf.int32, trainable=False, name="global_step")
        target = v1.placeholder(tf.float32, [None, None, None, 3])
        loss = v1.reduce_mean(tf.abs(net.output - target))
        trained = [
            v for v in v1.trainable_variables() if v.name.startswith(("DRAN/conv2d/", "DRAN/conv_block1p"))
        ]
        train_op = v1.train.AdamOptimizer(1e-3, name="AdamOptimizer").minimize(
            loss, global_step=step, var_list=trained
        )
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for var in v1.trainable_variables():
                shape = var.shape.as_list()
                fan = np.prod(shape[:-1]) + shape[-1] if len(shape) == 4 else 8
                value = rng.uniform(-1, 1, shape) * np.sqrt(6.0 / fan)
                if "alpha" in var.name:
                    value = rng.uniform(-0.5, 0.5, shape)
                elif var.name.endswith("bias:0"):
                    value = rng.uniform(-0.1, 0.1, shape)
                var.load(np.round(value * 256) / 256, sess)
            s = {"x2": 2, "x3": 3, "x4": 4}[scale]
            lr = rng.uniform(0, 1, (2, 9, 7, 3)).astype(np.float32)
            hr = rng.uniform(0, 1, (2, 9 * s, 7 * s, 3)).astype(np.float32)
            for _ in range(2):
                sess.run(train_op, {x: lr, target: hr})
            folder = out / name
            folder.mkdir(parents=True)
            saver.save(sess, str(folder / f"{name}"))
            output = sess.run(net.output, {x: lr})
            np.save(folder / "input.npy", lr)
            np.save(folder / "output.npy", output)
    return {"class": cls, "len": length, "scale": scale, "seed": seed, "global_step": 2}


def write_sharded(tf, out: Path) -> dict:
    """Variables on two devices saved with ``Saver(sharded=True)``: two .data shards, and float32, float64,
    int32 and int64 (``get_or_create_global_step``) tensors with known values."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        with tf.device("/cpu:0"):
            v1.get_variable("net/a", initializer=np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
            step = v1.train.get_or_create_global_step()
        with tf.device("/cpu:1"):
            v1.get_variable("net/b", initializer=np.linspace(-1, 1, 5))
            v1.get_variable("counter", initializer=np.int32(-3))
        saver = v1.train.Saver(sharded=True)
        with v1.Session(graph=graph, config=v1.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(step.assign(7))
            (out / "sharded").mkdir()
            saver.save(sess, str(out / "sharded" / "model"))
    return {"net/a": "arange(12).reshape(3, 4) / 7 (float32)", "net/b": "linspace(-1, 1, 5) (float64)",
            "counter": "-3 (int32)", "global_step": "7 (int64)"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--official", type=Path, required=True, help="folder holding the official model.py, ops.py"
    )
    parser.add_argument("--out", type=Path, required=True, help="the .tar.xz to write")
    args = parser.parse_args()
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    sys.modules["tensorflow"] = tf.compat.v1  # the official TF 1.8 code runs through tf.compat.v1
    sys.path.insert(0, str(args.official))
    import model  # the official DRSAN model.py

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta = {
            name: write_fixture(tf, model, name, *spec, root, seed)
            for seed, (name, spec) in enumerate(FIXTURES.items())
        }
        meta["sharded"] = write_sharded(tf, root)
        meta["tensorflow"] = tf.__version__
        (root / "fixtures.json").write_text(json.dumps(meta, indent=2))
        with tarfile.open(args.out, "w:xz", preset=9) as tar:
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.name.endswith(".meta"):  # graphs are not read: keep it small
                    tar.add(path, arcname=path.relative_to(root).as_posix())


if __name__ == "__main__":
    main()
