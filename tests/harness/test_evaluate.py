"""The evaluation engine: tiles, self-ensemble, precision, devices, saved SR images, several sets per call,
NTIRE layout, runtime protocol and progress, through the Python API and the `reprosr eval` command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import architectures
from harness import metrics, runtime, store, tiles
from harness.cli import main
from harness.data import Pair, read_image
from harness.eval_job import dataset_names
from harness.evaluate import TestTime, evaluate, super_resolve
from harness.schema import Inference, Precision

EMBEDDED = Path(__file__).resolve().parents[2] / "harness" / "embedded"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
pytestmark = pytest.mark.usefixtures("one_thread")


class TinySR(nn.Module):
    """Three 3×3 convolutions (receptive-field radius 3 LR pixels) + pixel shuffle, plus nearest upsampling
    of the input: an SR model whose exact receptive field is known, and that is not flip-equivariant."""

    def __init__(self, scale: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = x.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)
        return up + 0.1 * self.body(x)


def _receptive_radius(model: nn.Module, size: int = 33) -> int:
    """Measured: how far (LR pixels) the input pixels that move one central output pixel reach."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    c = size // 2
    model(x)[0, :, model.scale * c, model.scale * c].sum().backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    return int(max(c - rows.min(), rows.max() - c))


def _pairs(scale: int, n: int = 2, size: int = 64) -> list[Pair]:
    from harness.degrade import bicubic_downsample

    out = []
    for path in sorted(EMBEDDED.glob("*.png"))[:n]:
        hr, lr = bicubic_downsample(read_image(path)[:, :size, :size], scale)
        out.append(Pair(path.stem, hr, lr))
    return out


# ------------------------------------------------------------------------------------------------ tiles


def test_tiles_with_overlap_at_least_the_receptive_radius_equal_the_whole_image():
    model = TinySR(scale=3).eval()
    radius = _receptive_radius(model)
    assert radius == 3
    lr = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(lr)
        for tile in (8, 13, 40):
            exact = tiles.tiled(model, lr, 3, tile, radius)
            assert exact.shape == whole.shape
            # bound: float32 summation order only (same convolutions on the same pixels)
            torch.testing.assert_close(exact, whole, rtol=0, atol=1e-6)
        # less context than the receptive field changes pixels near the tile seams
        assert (tiles.tiled(model, lr, 3, 8, radius - 1) - whole).abs().max() > 1e-4


def test_tile_inference_is_recorded_and_validated():
    model = TinySR(scale=2)
    result = evaluate(model, _pairs(2, n=1), 2, test_time=TestTime(Inference.TILE, tile=12, tile_overlap=3))
    assert result.test_time.columns() == {
        "inference": "tile",
        "tile": 12,
        "tile_overlap": 3,
        "self_ensemble": False,
        "precision": "fp32",
    }
    whole = evaluate(model, _pairs(2, n=1), 2)
    assert result.mean["psnr_y"] == pytest.approx(whole.mean["psnr_y"], abs=1e-6)
    with pytest.raises(ValueError, match="tile"):
        TestTime(Inference.TILE)
    with pytest.raises(ValueError, match="tile"):
        TestTime(Inference.WHOLE, tile=8)


# -------------------------------------------------------------------------------------- self-ensemble


def test_self_ensemble_is_the_mean_of_the_eight_inverse_transformed_outputs():
    model = TinySR(scale=2).eval()
    x = torch.rand(1, 3, 11, 14, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = tiles.self_ensemble(model, x)
        expected = []
        for transpose in (False, True):
            for flips in ((), (-1,), (-2,), (-2, -1)):
                t = x.flip(flips) if flips else x
                t = t.transpose(-2, -1) if transpose else t
                y = model(t)
                y = y.transpose(-2, -1) if transpose else y
                expected.append(y.flip(flips) if flips else y)
        torch.testing.assert_close(got, torch.stack(expected).mean(0), rtol=0, atol=1e-6)
        assert (got - model(x)).abs().max() > 1e-4  # TinySR is not flip-equivariant


def test_self_ensemble_of_an_equivariant_model_is_the_model():
    model = TinySR(scale=2)
    nn.init.zeros_(model.body[4].weight), nn.init.zeros_(model.body[4].bias)  # only nearest upsampling left
    x = torch.rand(1, 3, 9, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(tiles.self_ensemble(model, x), model(x), rtol=0, atol=1e-6)


def test_self_ensemble_changes_the_scores_and_is_recorded():
    pairs = _pairs(2, n=1)
    plain = evaluate(TinySR(scale=2), pairs, 2)
    ensemble = evaluate(TinySR(scale=2), pairs, 2, test_time=TestTime(self_ensemble=True))
    assert ensemble.test_time.columns()["self_ensemble"] is True
    assert ensemble.mean["psnr_y"] != pytest.approx(plain.mean["psnr_y"], abs=1e-4)


# --------------------------------------------------------------------------------- precision, device


def test_bf16_runs_cast_copies_and_stays_close_to_fp32():
    model = TinySR(scale=2)
    pairs = _pairs(2, n=1)
    fp32 = evaluate(model, pairs, 2)
    bf16 = evaluate(model, pairs, 2, test_time=TestTime(precision=Precision.BF16))
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is not cast
    assert bf16.test_time.precision is Precision.BF16
    assert bf16.mean["psnr_y"] != fp32.mean["psnr_y"]
    assert bf16.mean["psnr_y"] == pytest.approx(fp32.mean["psnr_y"], abs=0.5)


def test_tf32_needs_cuda():
    with pytest.raises(ValueError, match="tf32"):
        evaluate(TinySR(), _pairs(2, n=1), 2, test_time=TestTime(precision="tf32"), device="cpu")


@NO_CUDA
def test_cuda_request_without_cuda_is_a_clear_error():
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.resolve_device(spec)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        runtime.resolve_device("tpu:0:x")


def test_on_device_block_sets_the_default_device():
    model = TinySR()
    with runtime.on_device("cpu"):
        result = evaluate(model, _pairs(2, n=1), 2)
    assert result.device.startswith("cpu: ")


# ------------------------------------------------------------------------------------ runtime protocol


def test_runtime_protocol_repeats_give_a_median_and_an_iqr():
    result = evaluate(TinySR(), _pairs(2), 2, protocol=runtime.RuntimeProtocol(warmup=1, repeats=3))
    assert result.runtime_protocol["warmup"] == 1 and result.runtime_protocol["repeats"] == 3
    assert result.runtime_protocol["timer"] == "perf_counter"
    for row in result.per_image:
        assert row["runtime_ms"] > 0 and row["runtime_iqr_ms"] >= 0 and "peak_memory_mb" not in row
    assert runtime.RuntimeProtocol.default(torch.device("cpu")) == runtime.RuntimeProtocol(0, 1)
    with pytest.raises(ValueError, match="repeats"):
        runtime.RuntimeProtocol(0, 0)


def test_super_resolve_returns_float32_at_every_precision():
    model = runtime.cast_model(TinySR(), Precision.BF16)
    out = super_resolve(model, torch.rand(3, 8, 8), test_time=TestTime(precision=Precision.BF16))
    assert out.dtype == torch.float32 and out.shape == (3, 16, 16)


# ------------------------------------------------------------------------------------------ datasets


def test_dataset_names_lists_and_the_papers_own_sets():
    assert dataset_names("Set5,Set14", "drsan", "32s", 4) == ["Set5", "Set14"]
    assert dataset_names("paper", "hspan", None, 4) == ["Set5", "Set14", "B100", "Urban100", "Manga109"]
    assert dataset_names("Set5,paper", "hspan", None, 4)[0] == "Set5"
    with pytest.raises(ValueError, match="no recipe"):
        dataset_names("paper", "span_esr", "ch7", 4)
    with pytest.raises(ValueError, match="commas"):
        dataset_names("Set5,,Set14", "hspan", None, 4)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    """Two small benchmark sets in the registry layout (HR only; the LR is generated, MATLAB-exact) and
    one in the NTIRE layout (``<name>_HR/<image>.png``, ``<name>_LR/<image>x4.png``)."""
    from harness.degrade import bicubic_downsample

    root = tmp_path / "data"
    for name, files in (("TinyA", ["astronaut", "chelsea"]), ("TinyB", ["coffee"])):
        (root / name / "HR").mkdir(parents=True)
        for f in files:
            Image.open(EMBEDDED / f"{f}.png").crop((0, 0, 64, 56)).save(root / name / "HR" / f"{f}.png")
    (root / "TinyNTIRE_HR").mkdir()
    (root / "TinyNTIRE_LR").mkdir()
    hr = read_image(EMBEDDED / "rocket.png")[:, :64, :48]
    lr = bicubic_downsample(hr, 4)[1]
    for img, path in (
        (hr, root / "TinyNTIRE_HR" / "rocket.png"),
        (lr, root / "TinyNTIRE_LR" / "rocketx4.png"),
    ):
        Image.fromarray(img.mul(255).round().byte().permute(1, 2, 0).numpy()).save(path)
    return root


@pytest.fixture
def tiny_drsan(tmp_path, monkeypatch) -> Path:
    """A DRSAN ×4 with 8 channels (the path of the published sizes, at a test's cost) and its checkpoint."""
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    monkeypatch.setattr(
        architectures,
        "build",
        lambda *a, **k: architectures.registry.build(*a, channels=8, n_drags=1, n_units=1, **k),
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"params": architectures.build("drsan", 4, "32s").state_dict()}, ckpt)
    return ckpt


def _eval(capsys, ckpt: Path, root: Path, *extra: str) -> tuple[dict, str]:
    argv = ["eval", "drsan", "--scale", "4", "--checkpoint", str(ckpt), "--data-root", str(root), "--json"]
    main([*argv, *extra])
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_one_set_keeps_the_single_set_shape_with_knobs_and_ntire_psnr(capsys, tiny_drsan, tiny_root):
    payload, err = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA", "--quiet")
    assert err == ""
    assert payload["dataset"] == "TinyA" and "results" not in payload
    assert [r["image"] for r in payload["per_image"]] == ["astronaut", "chelsea"]
    for key in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_edsr", "runtime_ms", "runtime_iqr_ms"):
        assert key in payload and all(key in r for r in payload["per_image"])
    assert payload["precision"] == "fp32" and payload["inference"] == "whole" and payload["tile"] == 0
    assert payload["device"].startswith("cpu: ")
    assert payload["runtime_protocol"]["warmup"] == 0 and payload["runtime_protocol"]["repeats"] == 1


def test_several_sets_give_one_result_object_each_and_store_the_knobs(capsys, tiny_drsan, tiny_root):
    payload, _ = _eval(
        capsys,
        tiny_drsan,
        tiny_root,
        "--dataset",
        "TinyA,TinyB,TinyNTIRE",
        "--tile",
        "10",
        "--tile-overlap",
        "2",
        "--self-ensemble",
        "--runtime-repeats",
        "2",
        "--quiet",
    )
    assert list(payload) == ["results", "run_id"]
    single, _ = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyB", "--quiet", "--no-store")
    assert [r["dataset"] for r in payload["results"]] == ["TinyA", "TinyB", "TinyNTIRE"]
    for r in payload["results"]:
        assert set(single) <= set(r)  # each result has today's single-set shape
        assert (r["inference"], r["tile"], r["tile_overlap"], r["self_ensemble"]) == ("tile", 10, 2, True)
    assert payload["results"][2]["per_image"][0]["image"] == "rocket"
    rows = store.read("results")
    assert set(rows.dataset) == {"TinyA", "TinyB", "TinyNTIRE"} and rows.run_id.nunique() == 1
    assert (rows.inference == "tile").all() and (rows.tile == 10).all() and (rows.tile_overlap == 2).all()
    assert rows.self_ensemble.all() and (rows.precision == "fp32").all()
    timed = rows[rows.metric == "runtime_ms"]
    assert timed.device.str.startswith("cpu: ").all()
    assert {json.loads(p)["repeats"] for p in timed.runtime_protocol} == {2}
    assert (rows[rows.metric == "psnr_y"].runtime_protocol == "").all()


def test_saved_sr_images_rescore_to_the_same_numbers(capsys, tiny_drsan, tiny_root, tmp_path):
    out = tmp_path / "sr"
    payload, _ = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA", "--save-sr", str(out), "--quiet")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"]["TinyA"]["model"] == "drsan"
    for row in payload["per_image"]:
        png = out / "TinyA" / f"{row['image']}.png"
        pixels = np.asarray(Image.open(png).convert("RGB"))
        entry = manifest["images"][f"TinyA/{row['image']}.png"]
        assert entry["sha256_pixels"] == hashlib.sha256(pixels.tobytes()).hexdigest()
        main(
            [
                "metrics",
                str(png),
                str(tiny_root / "TinyA" / "HR" / f"{row['image']}.png"),
                "--scale",
                "4",
                "--json",
            ]
        )
        rescored = json.loads(capsys.readouterr().out)
        for key in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_edsr"):
            assert rescored[key] == row[key], key


def test_progress_goes_to_stderr_and_quiet_silences_it(capsys, tiny_drsan, tiny_root):
    payload, err = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA", "--no-store")
    assert "TinyA ×4" in err and "img" in err
    assert payload["dataset"] == "TinyA"  # stdout held exactly one JSON object
    _, err = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA", "--no-store", "--quiet")
    assert err == ""


def test_precision_flag_is_recorded_and_tf32_on_cpu_exits_2(capsys, tiny_drsan, tiny_root):
    payload, _ = _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyB", "--precision", "bf16", "--quiet")
    assert payload["precision"] == "bf16"
    assert set(store.read("results").precision) == {"bf16"}
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            _eval(
                capsys, tiny_drsan, tiny_root, "--dataset", "TinyB", "--precision", "tf32", "--device", "cpu"
            )
        assert exc.value.code == 2
        assert "tf32" in capsys.readouterr().err


@NO_CUDA
@pytest.mark.parametrize("command", ["eval", "reproduce"])
def test_cuda_request_without_cuda_exits_2(capsys, tiny_drsan, tiny_root, command):
    argv = (
        ["eval", "drsan", "--scale", "4", "--checkpoint", str(tiny_drsan), "--dataset", "TinyA"]
        if command == "eval"
        else ["reproduce", "drsan_32s_x4"]
    )
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--data-root", str(tiny_root), "--device", "cuda", "--json"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert "CUDA is not available" in json.loads(out)["error"] and "CUDA is not available" in err


def test_complexity_of_the_self_ensemble_is_eight_forwards(capsys):
    main(["complexity", "drsan", "--scale", "4", "--variant", "32s", "--json"])
    plain = json.loads(capsys.readouterr().out)
    main(["complexity", "drsan", "--scale", "4", "--variant", "32s", "--self-ensemble", "--json"])
    ensemble = json.loads(capsys.readouterr().out)
    assert ensemble["self_ensemble"] is True and plain["self_ensemble"] is False
    assert ensemble["macs"] == pytest.approx(8 * plain["macs"], rel=1e-12)


def test_reproduce_names_each_stage_on_stderr(capsys, tmp_path, tiny_drsan):
    argv = ["reproduce", "drsan_32s_x2", "--device", "cpu", "--data-root", str(tmp_path / "no-data")]
    main([*argv, "--out", str(tmp_path / "run"), "--json"])
    out, err = capsys.readouterr()
    assert json.loads(out)["recipe"] == "drsan_32s_x2"
    stages = [line for line in err.splitlines() if line.startswith("[reprosr] ")]
    assert any("static checks" in s for s in stages)
    assert any("training (smoke profile, seed 0) on cpu" in s for s in stages)
    assert any("evaluating on embedded" in s for s in stages) and "verdicts" in stages[-1]
    rows = store.read("results")
    assert rows[rows.metric == "runtime_ms"].device.str.startswith("cpu: ").all()


def test_python_api_evaluates_several_sets_and_saves_what_it_scored(tiny_drsan, tiny_root, tmp_path):
    from harness.eval_job import run_eval
    from harness.eval_request import EvalRequest

    request = EvalRequest(
        str(tiny_drsan), ("TinyA", "TinyNTIRE"), model="drsan", variant="32s", scale=4, form="train",
        data_root=tiny_root, precision="fp16", device="cpu", save_sr=tmp_path / "sr", store=False,
    )  # fmt: skip
    payload = run_eval(request)
    assert [r["dataset"] for r in payload["results"]] == ["TinyA", "TinyNTIRE"]
    assert {r["precision"] for r in payload["results"]} == {"fp16"}
    manifest = json.loads((tmp_path / "sr" / "manifest.json").read_text())
    assert set(manifest["images"]) == {"TinyA/astronaut.png", "TinyA/chelsea.png", "TinyNTIRE/rocket.png"}
    for name, entry in manifest["images"].items():
        sr = read_image(tmp_path / "sr" / name)
        ntire = name.startswith("TinyNTIRE")
        hr = read_image(tiny_root / ("TinyNTIRE_HR" if ntire else "TinyA/HR") / name.split("/")[1])
        assert entry["psnr_y"] == metrics.psnr_y(sr, hr[:, : sr.shape[1], : sr.shape[2]], 4)


def test_precision_ensemble_and_tiles_are_knob_effects_of_the_report():
    import pandas as pd

    from harness.evaluate import result_rows
    from harness.report.run_tables import knob_effects
    from harness.rows import RunContext
    from harness.schema import Profile, Tier

    pairs = _pairs(2, n=2)
    ctx = RunContext.new(
        profile=Profile.CHECKPOINT, tier=Tier.CHECKPOINT, paper="p", model="tiny", variant="", form="train",
        scale=2, checkpoint="c.pth", checkpoint_hash="h",
    )  # fmt: skip
    results = {}
    for name, test_time in (
        ("fp32", TestTime()),
        ("bf16", TestTime(precision=Precision.BF16)),
        ("ensemble", TestTime(self_ensemble=True)),
        ("tiles", TestTime(Inference.TILE, tile=12, tile_overlap=1)),
    ):
        results[name] = evaluate(TinySR(), pairs, 2, test_time=test_time)
    rows = pd.DataFrame([r for res in results.values() for r in result_rows(res, ctx, dataset="Tiny")])
    effects = {(e["knob"], e["expression"]): e for e in knob_effects(rows)}
    for knob, expression, name in (
        ("precision", "psnr_y(precision=bf16) − psnr_y(precision=fp32)", "bf16"),
        ("self-ensemble ×8", "psnr_y(self_ensemble=True) − psnr_y(self_ensemble=False)", "ensemble"),
        ("tiles vs whole image", "psnr_y(procedure=tile 12/1) − psnr_y(procedure=whole)", "tiles"),
    ):
        effect = effects[(knob, expression)]
        pairs_of_rows = zip(results[name].per_image, results["fp32"].per_image, strict=True)
        diffs = [a["psnr_y"] - b["psnr_y"] for a, b in pairs_of_rows]
        assert effect["n"] == 2 and effect["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-12)


def test_a_missing_set_is_named_before_the_first_image_and_nothing_is_stored(capsys, tiny_drsan, tiny_root):
    with pytest.raises(SystemExit) as exit_:
        _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA,Missing", "--quiet")
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert "Missing" in json.loads(out)["error"] and "TinyA" not in json.loads(out)["error"]
    assert "per_image" not in out and store.read("results").empty


def test_each_finished_set_is_stored_before_the_next_starts(capsys, tiny_drsan, tiny_root, monkeypatch):
    from harness import eval_job

    calls = []

    def evaluate_then_fail(model, pairs, *args, **kwargs):
        if calls:
            raise FloatingPointError("TinyB: the model produced NaN/Inf")
        calls.append(len(pairs))
        return evaluate(model, pairs, *args, **kwargs)

    monkeypatch.setattr(eval_job, "evaluate", evaluate_then_fail)
    with pytest.raises(SystemExit):
        _eval(capsys, tiny_drsan, tiny_root, "--dataset", "TinyA,TinyB", "--quiet")
    rows = store.read("results")
    assert set(rows.dataset) == {"TinyA"} and len(rows[rows.image == ""]) > 0


def test_text_eval_prints_its_run_id_and_where_the_rows_went(capsys, tiny_drsan, tiny_root):
    argv = ["eval", "drsan", "--scale", "4", "--checkpoint", str(tiny_drsan), "--data-root", str(tiny_root)]
    main([*argv, "--dataset", "TinyB", "--quiet"])
    out = capsys.readouterr().out
    run_id = store.read("results").run_id.iloc[0]
    assert f"run {run_id}: rows appended to {store.default_root()}" in out
