"""Cases 8, 9, 10 and the JSON part of 11 through the command line: every anticipated bad input ends
with `error: …` on stderr and exit 2 (and one JSON error object on stdout under --json), never with a
traceback; JSON output is strict (no NaN/Infinity)."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.data import DATASETS, EMBEDDED, write_image

REPO = Path(__file__).resolve().parents[2]
IMAGE = sorted(EMBEDDED.glob("*.png"))[0]


def invoke(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_usage_error(code: int, out: str, err: str, json_flag: bool, match: str = "") -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in err and "error: " in err and match in err
    if json_flag:
        assert match in strict_json(out)["error"]
    else:
        assert out == ""


# --------------------------------------------------------------------------------------------- case 8


@pytest.mark.parametrize("json_flag", [False, True])
@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", str(IMAGE), str(IMAGE), "--scale", "0"],
        ["metrics", str(IMAGE), str(IMAGE), "--scale", "-3"],
        ["degrade", str(IMAGE), "--scale", "0", "--out", "x.png"],
        ["degrade", str(IMAGE), "--scale", "-2", "--out", "x.png"],
        ["reproduce", "span_light_x4", "--max-iters", "0"],
        ["reproduce", "span_light_x4", "--max-iters", "-5"],
        ["complexity", "span_light", "--scale", "0"],
    ],
)
def test_non_positive_scales_and_iteration_counts_are_usage_errors(argv, json_flag, capsys, tmp_path):
    code, out, err = invoke(argv + ["--json"] * json_flag, capsys)
    assert_usage_error(code, out, err, json_flag, "must be a positive integer")
    assert not (tmp_path / "x.png").exists() and not Path("x.png").exists()


@pytest.mark.parametrize("json_flag", [False, True])
@pytest.mark.parametrize("action", ["fetch", "verify"])
def test_data_fetch_and_verify_without_a_name_are_usage_errors(action, json_flag, capsys):
    code, out, err = invoke(["data", action] + ["--json"] * json_flag, capsys)
    assert_usage_error(code, out, err, json_flag, f"reprosr data {action} NAME")


def test_a_metrics_size_mismatch_under_json_is_one_error_object(tmp_path, capsys):
    write_image(tmp_path / "small.png", torch.rand(3, 30, 40))
    code, out, err = invoke(
        ["metrics", str(tmp_path / "small.png"), str(IMAGE), "--scale", "2", "--json"], capsys
    )
    assert_usage_error(code, out, err, True, "small.png is (30, 40)")
    assert len(out.strip().splitlines()) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scale=st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=6)),
    command=st.sampled_from(["metrics", "degrade"]),
)
def test_any_scale_argument_gives_a_result_or_a_clear_error(tmp_path, capsys, scale, command):
    files = (
        [str(IMAGE), str(IMAGE)] if command == "metrics" else [str(IMAGE), "--out", str(tmp_path / "o.png")]
    )
    code, out, err = invoke([command, *files, f"--scale={scale}", "--json", "--quiet"], capsys)
    assert code in (0, 2) and "Traceback" not in err
    payload = strict_json(out)
    assert ("error" in payload) == (code == 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    action=st.sampled_from(["fetch", "verify"]),
    name=st.text(min_size=1, max_size=12).filter(lambda n: n not in DATASETS and not n.startswith("-")),
)
def test_an_unknown_dataset_name_is_a_clear_error(tmp_path, capsys, action, name):
    code, out, err = invoke(["data", action, name, "--data-root", str(tmp_path), "--json"], capsys)
    assert_usage_error(code, out, err, True, "unknown dataset")


# --------------------------------------------------------------------------------------------- case 9


def test_models_json_into_a_closed_pipe_prints_no_traceback():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (`reprosr models --json | head -0`)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "models", "--json"], stdout=write, stderr=subprocess.PIPE, env=env
    )
    os.close(write)
    assert proc.returncode == 1 and proc.stderr == b""


def test_an_absurd_variant_width_is_refused_before_allocating(capsys):
    code, out, err = invoke(
        ["complexity", "span_esr", "--scale", "4", "--variant", "ch1000000", "--json"], capsys
    )
    assert_usage_error(code, out, err, True, "1000000 feature channels")


def test_a_text_file_as_a_checkpoint_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.pth").write_text("101 things to check\n")
    argv = ["eval", "span_light", "--scale", "4", "--checkpoint", str(tmp_path / "notes.pth")]
    code, out, err = invoke([*argv, "--dataset", "Set5", "--data-root", str(tmp_path), "--no-store"], capsys)
    assert_usage_error(code, out, err, False, f"not a PyTorch checkpoint: {tmp_path / 'notes.pth'}")


# -------------------------------------------------------------------------------------------- case 10


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_code_running_checkpoints_are_refused_as_such_and_never_run(tmp_path, capsys, writer):
    marker, path = tmp_path / "ran", tmp_path / "evil.pth"
    payload = {"conv.weight": torch.zeros(1), "x": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    argv = ["eval", "span_light", "--scale", "4", "--checkpoint", str(path)]
    code, out, err = invoke([*argv, "--dataset", "Set5", "--data-root", str(tmp_path), "--no-store"], capsys)
    assert_usage_error(code, out, err, False, "needs Python code to run")
    assert "system" in err and "refused for safety" in err
    assert "weights_only=False" not in err and "corrupt" not in err and "re-download" not in err
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- case 11


def test_identical_images_give_strict_json_with_the_infinity_named(capsys):
    code, out, err = invoke(["metrics", str(IMAGE), str(IMAGE), "--scale", "2", "--json"], capsys)
    assert code == 0
    payload = strict_json(out)
    psnrs = {k for k in payload if k.startswith("psnr")}
    assert psnrs >= {"psnr_y", "psnr_rgb"} and all(payload[k] is None for k in psnrs)
    assert payload["non_finite"] == {k: "inf" for k in psnrs}
    assert payload["ssim_y"] == pytest.approx(1.0)


@given(st.recursive(st.floats() | st.integers() | st.text(max_size=3), lambda c: st.lists(c, max_size=3)))
def test_dumps_is_always_strict_json(value):
    payload = {"value": value}
    parsed = strict_json(cli.dumps(payload))
    listed = parsed.pop("non_finite", {})
    for where, text in listed.items():
        assert text in ("inf", "-inf", "nan") and where.startswith("value")
    if isinstance(value, float) and not math.isfinite(value):
        assert parsed["value"] is None and listed == {"value": str(value)}
