"""architectures.detect: model, variant, scale and form from the tensors alone, for every registered
identity, every wrapper and both SPAN-ESR forms; a file of no registered architecture says so; the content
hash does not depend on the file format."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

import architectures
from architectures import CheckpointError, content_hash, load_detected
from architectures.detect import Identity, detect, matches
from tests.conftest import shared_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TF_FIXTURES = Path(__file__).with_name("data") / "drsan_tf_fixtures.tar.xz"
SHARED = {
    "ntire2024_team38_span_ch28_x4.pth": Identity("span_esr", "ch28", 4, "deploy"),
    "ntire2024_team39_spantiny_ch26_x4.pth": Identity("span_esr", "ch26", 4, "deploy"),
}


def registered() -> list[Identity]:
    """Every published model × variant × scale × form of the registry."""
    return [
        Identity(name, variant, scale, form)
        for name, spec in sorted(architectures.MODELS.items())
        for variant, scales in spec.scales.items()
        for scale in scales
        for form in spec.forms
    ]


def random_state_dict(ident: Identity) -> dict[str, torch.Tensor]:
    """Random tensors in the layout of ``ident`` (built on the meta device: shapes only)."""
    with torch.device("meta"):
        try:
            model = architectures.build(ident.model, ident.scale, ident.variant, form=ident.form)
        except NotImplementedError:  # a constructor that reads tensor values: build it for real
            model = None
    if model is None:
        model = architectures.build(ident.model, ident.scale, ident.variant, form=ident.form)
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ident", registered(), ids=str)
def test_every_registered_identity_is_detected(ident):
    state_dict = random_state_dict(ident)
    found = detect(state_dict)
    assert found.identity == ident and found.published
    assert found.param_key is None and found.content_hash == content_hash(state_dict)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_the_shared_ntire_releases_are_detected(name):
    path = shared_checkpoint(name)
    if path is None:
        pytest.skip(f"not run: {name} not found (set REPROSR_TEST_CHECKPOINTS to shared/checkpoints)")
    found = detect(path)
    assert found.identity == SHARED[name] and found.param_key is None
    model, again = load_detected(path)
    assert again == found and model.scale == 4 and model.feature_channels == int(found.variant[2:])


def test_wrappers_prefixes_and_param_key(tmp_path):
    ident = Identity("span_esr", "ch12", 2, "train")
    ema, plain = random_state_dict(ident), {k: v + 1 for k, v in random_state_dict(ident).items()}
    path = tmp_path / "net_g_1000.pth"
    torch.save({"params": {f"module.{k}": v for k, v in plain.items()}, "params_ema": ema}, path)
    found = detect(path)
    assert found.identity == ident and found.param_key == "params_ema"
    assert found.content_hash == content_hash(ema)
    chosen = detect(path, param_key="params")
    assert chosen.param_key == "params" and chosen.content_hash == content_hash(plain) != found.content_hash
    for wrapper in ("state_dict", "model"):
        torch.save({wrapper: ema, "epoch": 3}, path)
        assert detect(path).content_hash == found.content_hash
    with pytest.raises(CheckpointError, match="no state_dict under 'params'"):
        detect(path, param_key="params")


def test_content_hash_covers_names_dtypes_shapes_and_values():
    base = {"a.weight": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    digest, w = content_hash(base), base["a.weight"]
    assert len(digest) == 64 and content_hash(dict(reversed(base.items()))) == digest
    assert content_hash({**base, "a.weight": base["a.weight"].t().contiguous().t()}) == digest
    for changed in (
        {**base, "a.weight": torch.where(w == 5, torch.nextafter(w, torch.tensor(9.0)), w)},
        {**base, "a.weight": base["a.weight"].double()},
        {**base, "a.weight": base["a.weight"].reshape(3, 2)},
        {"A.weight": base["a.weight"], "b": base["b"]},
    ):
        assert content_hash(changed) != digest


def test_tf_bundle_is_detected_with_the_hash_of_its_conversion(tmp_path):
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / "drsan32s_x2"
    found = detect(folder)
    assert found.identity == Identity("drsan", "32s", 2, "train")
    model = architectures.load_checkpoint(architectures.build("drsan", 2, "32s"), folder)
    torch.save(model.state_dict(), tmp_path / "converted.pth")
    assert detect(tmp_path / "converted.pth").content_hash == found.content_hash
    with pytest.raises(CheckpointError, match="matches no registered architecture.*C=32 K=1 N=4"):
        detect(tmp_path / "drsan32_k1_x2")  # one DRAG: the official class, but no registered variant


def test_a_tf_bundle_in_a_pytorch_model_says_what_it_is(tmp_path):
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path, filter="data")
    with pytest.raises(CheckpointError, match="no mapping from TF variables.*it is a drsan 32s x2 train"):
        architectures.load_checkpoint(architectures.build("span_light", 2), tmp_path / "drsan32s_x2")


def test_a_span_family_file_of_another_architecture_matches_nothing():
    """An NTIRE 2025 SPAN-family entry keeps SPAN's names but changes the blocks: no registered layout, and
    no variant offered as a remedy."""
    state_dict = random_state_dict(Identity("span_esr", "ch48", 4, "deploy"))
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("block_6.")}
    state_dict["block_1.c4_r.eval_conv.weight"] = torch.zeros(48, 48, 3, 3)
    with pytest.raises(CheckpointError) as info:
        detect(state_dict)
    message = str(info.value)
    assert "matches no registered architecture" in message and "--variant" not in message
    assert "nearest registered layout, span_esr ch48 x4 deploy, differs: missing keys (6)" in message


def test_unrelated_keys_match_nothing():
    with pytest.raises(CheckpointError, match=r"matches no registered architecture .* its keys \(1\): fc"):
        detect({"fc": torch.zeros(2, 2)})


def test_an_unpublished_scale_is_named_and_refused_when_building():
    with torch.device("meta"):
        x4 = architectures.registry.spec("drsan").builder(scale=4, variant="32l", form="train").state_dict()
    state_dict = {k: torch.zeros(v.shape) for k, v in x4.items()}
    found = detect(state_dict)
    assert str(found) == "drsan 32l x4 train" and not found.published
    with pytest.raises(CheckpointError, match=r"drsan 32l is published at scales \(2,\) only"):
        load_detected(state_dict)


def test_detection_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    matches({"conv_first.weight": torch.zeros(60, 3, 3, 3)})
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("model", ["hspan", "span_light"])
def test_official_layouts_are_detected(model):
    """The state_dict layouts the official code writes (recorded from it in ``data/``), per scale."""
    layouts = json.loads((Path(__file__).with_name("data") / f"{model}_official_state_dict.json").read_text())
    for scale, shapes in layouts.items():
        state_dict = {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}
        assert matches(state_dict) == [Identity(model, None, int(scale), "train")]


NTIRE2025 = json.loads((Path(__file__).with_name("data") / "ntire2025_span_family_layouts.json").read_text())


@pytest.mark.parametrize("name", sorted(NTIRE2025["files"]))
def test_ntire2025_span_family_releases_match_no_registered_architecture(name):
    """Real NTIRE 2025 SPAN-family files (layouts recorded from the releases): SPAN's names, other
    architectures (SPANF's conv_near, ESPAN's teacher branch, team51's narrower fusion): no match, and no
    variant or scale offered as a remedy."""
    layout = NTIRE2025["files"][name]["layout"]
    with pytest.raises(CheckpointError) as info:
        detect({k: torch.empty(shape, device="meta") for k, shape in layout.items()})
    message = str(info.value)
    assert (
        "matches no registered architecture" in message and "nearest registered layout, span_esr" in message
    )
    assert "--variant" not in message and "--scale" not in message and "pass " not in message
