"""A built wheel (`pip install .`, not editable) carries what `verify`, `report` and `eval` read: templates,
recipes, the published tables, the official-code counts, the committed store and its artifacts, cited docs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from harness.paths import REPO, SHIPPED


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("reprosr-*.whl")
    return found


def committed(relative: str) -> set[str]:
    root = REPO / relative
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    return {str(p.relative_to(REPO)) for p in files}


def test_wheel_holds_the_committed_inputs_templates_and_report_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for relative in SHIPPED:
        expected = {f"harness/_repo/{f}" for f in committed(relative)}
        shipped = {n for n in names if n.startswith(f"harness/_repo/{relative}")}
        assert expected and shipped == expected, relative  # nothing missing, nothing stale
    templates = {f"harness/templates/{p.name}" for p in (REPO / "harness" / "templates").glob("*.html")}
    assert templates <= names and "harness/report/pages.py" in names
    assert {f"harness/recipes/{p.name}" for p in (REPO / "harness" / "recipes").glob("*.toml")} <= names


@pytest.mark.slow
def test_installed_wheel_runs_verify_report_and_eval_outside_a_checkout(wheel, tmp_path, datasets_root):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {**os.environ, "REPROSR_RESULTS": str(tmp_path / "store"), "PYTHONPATH": ""}
    install = [bin_dir / "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel]
    subprocess.run(install, check=True, timeout=300, env=env, cwd=tmp_path)

    def reprosr(*args: str) -> str:
        command = [bin_dir / "reprosr", *args, "--quiet"]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "3 pass" in reprosr("verify", "drsan_32s_x2")
    reprosr("report", "--out", str(tmp_path / "site"))
    for page in (REPO / "reports").glob("*.html"):
        assert (tmp_path / "site" / page.name).read_bytes() == page.read_bytes(), page.name
    subprocess.run(
        [bin_dir / "python", "-c", "import torch, architectures; "
         f"torch.save(architectures.build('drsan', 2, '32s').state_dict(), {str(tmp_path / 'w.pth')!r})"],
        check=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    weights = str(tmp_path / "w.pth")
    out = reprosr("eval", "drsan", "--scale", "2", "--variant", "32s", "--checkpoint", weights,
                  "--dataset", "Set5", "--data-root", str(datasets_root))  # fmt: skip
    assert "Set5 x2 mean" in out and (tmp_path / "store" / "results").is_dir()
