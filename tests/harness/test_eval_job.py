"""`reprosr eval` / `reprosr upscale` as the field runs them: a released file with no model flags, free
folders, a TOML config kept with the run, NTIRE's results.txt, and an LR folder without ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import store
from harness.cli import main
from harness.data import read_image
from tests.conftest import shared_checkpoint

SPAN_CH28 = "ntire2024_team38_span_ch28_x4.pth"
OFFICIAL_SET5_PSNR_Y = (
    31.731633  # the official SPAN code + BasicSR metrics (results/official/official_code.csv)
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ch28() -> Path:
    path = shared_checkpoint(SPAN_CH28)
    if path is None:
        pytest.skip(f"not run: {SPAN_CH28} not found (set REPROSR_TEST_CHECKPOINTS to shared/checkpoints)")
    return path


@pytest.fixture
def set5_pair_of_folders(datasets_root, tmp_path) -> tuple[Path, Path]:
    """Two Set5 images as free folders (HR, and LR named `<stem>x4.png` as BasicSR's filename_tmpl has it)
    and, under ``tmp_path/registry``, as the registry layout."""
    hr, lr = tmp_path / "gt", tmp_path / "lq"
    registry = tmp_path / "registry" / "Set5"
    for folder in (hr, lr, registry / "HR", registry / "LR_bicubic" / "X4"):
        folder.mkdir(parents=True)
    for stem in ("baby", "bird"):
        for link, target in ((hr / f"{stem}.png", "HR"), (lr / f"{stem}x4.png", "LR_bicubic/X4"),
                             (registry / "HR" / f"{stem}.png", "HR"),
                             (registry / "LR_bicubic" / "X4" / f"{stem}.png", "LR_bicubic/X4")):  # fmt: skip
            link.symlink_to(datasets_root / "Set5" / target / f"{stem}.png")
    return hr, lr


def _json(capsys, *argv: str) -> dict:
    main([*argv, "--json", "--quiet"])
    return json.loads(capsys.readouterr().out)


def test_a_released_file_is_evaluated_with_no_model_flags(
    ch28, set5_pair_of_folders, capsys, monkeypatch, tmp_path
):
    """The model, variant, scale and form come from the tensors; free folders give the registry's numbers."""
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    hr, lr = set5_pair_of_folders
    p = _json(capsys, "eval", str(ch28), "--dataset", "Set5", "--hr-dir", str(hr), "--lr-dir", str(lr),
              "--filename-tmpl", "{}x4")  # fmt: skip
    assert (p["model"], p["variant"], p["scale"], p["form"]) == ("span_esr", "ch28", 4, "deploy")
    assert p["checkpoint"] == "span_esr_ch28_x4_ntire2024"  # recognised as the release, not a path
    registry = _json(
        capsys, "eval", str(ch28), "--dataset", "Set5", "--data-root", str(tmp_path / "registry")
    )

    def scores(payload):
        return [{k: v for k, v in r.items() if "runtime" not in k} for r in payload["per_image"]]

    assert scores(p) == scores(registry) and p["checkpoint_hash"] == registry["checkpoint_hash"]
    rows = store.read("results")
    assert set(rows.checkpoint_hash) == {p["checkpoint_hash"]} and len(p["checkpoint_hash"]) == 64


def test_a_config_file_is_the_whole_evaluation_and_is_kept_with_the_run(
    ch28, set5_pair_of_folders, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    hr, lr = set5_pair_of_folders
    config = tmp_path / "eval.toml"
    (tmp_path / "ch28.pth").symlink_to(ch28)
    config.write_text(  # paths relative to the config file's folder
        f'checkpoint = "ch28.pth"\ndatasets = ["Set5"]\nhr_dir = "{hr.name}"\nlr_dir = "{lr.name}"\n'
        'filename_tmpl = "{}x4"\ntile = 48\nntire_report = "results.txt"\n'
    )
    p = _json(capsys, "eval", "--config", str(config))
    assert p["inference"] == "tile" and p["tile"] == 48 and p["tile_overlap"] > 0  # the measured field
    assert (tmp_path / "store" / "configs" / f"{p['run_id']}.toml").read_text() == config.read_text()
    table = (tmp_path / "results.txt").read_text().splitlines()  # relative to the config file
    assert table[0].split("\t")[0].strip() == "Model" and "0.151" in table[1] and "9.83" in table[1]
    assert table[1].split("\t")[6].strip() == "-"  # memory: measured on CUDA only


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('datasets = ["Set5"]\n', "`checkpoint` is required"),
        ('checkpoint = "x"\ndatasets = ["Set5"]\ncolour = 1\n', "unknown keys ['colour']"),
        ('checkpoint = "x"\ndatasets = ["Set5"]\ntile = -1\n', "`tile` must be"),
    ],
)  # fmt: skip
def test_a_bad_config_file_names_the_file_and_the_key(tmp_path, capsys, body, message):
    config = tmp_path / "eval.toml"
    config.write_text(body)
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--config", str(config), "--json"])
    assert exit_.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert str(config) in error and message in error


def test_upscale_writes_the_sr_of_an_lr_folder_without_ground_truth(
    ch28, set5_pair_of_folders, capsys, tmp_path
):
    _, lr = set5_pair_of_folders
    p = _json(capsys, "upscale", str(ch28), str(lr), "--out", str(tmp_path / "sr"))
    assert p["scale"] == 4 and sorted(Path(w).name for w in p["written"]) == ["babyx4.png", "birdx4.png"]
    assert read_image(tmp_path / "sr" / "babyx4.png").shape == (3, 512, 512)
