"""Packaging hook (metadata lives in pyproject.toml): a built wheel carries the committed inputs that commands
read at run time (``harness.paths.SHIPPED``: published tables, official-code counts, the committed results
store and run artifacts, cited documents) under ``harness/_repo/``, where ``harness.paths.repo_file`` finds
them outside a checkout."""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = runpy.run_path(str(ROOT / "harness" / "paths.py"))["SHIPPED"]  # paths.py imports only pathlib


class BuildWithCommittedInputs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "harness" / "_repo"
        shutil.rmtree(target, ignore_errors=True)  # a reused build/ folder must not keep deleted inputs
        for relative in SHIPPED:
            source = ROOT / relative
            if source.is_dir():
                shutil.copytree(source, target / relative, dirs_exist_ok=True)
            elif source.is_file():
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / relative)


setup(cmdclass={"build_py": BuildWithCommittedInputs})
