"""load_checkpoint: layouts it recognises, strictness, and errors that name the remedy."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import architectures
from architectures.checkpoint import CheckpointError, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def span(scale: int = 2, variant: str = "ch12", form: str = "deploy") -> nn.Module:
    return architectures.build("span_esr", scale, variant, form=form)


def shifted(state_dict: dict, delta: float) -> dict:
    return {k: v + delta for k, v in state_dict.items()}


def assert_loaded(model: nn.Module, state_dict: dict) -> None:
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())


def test_basicsr_prefers_params_ema_and_says_so(tmp_path, caplog):
    source = span().state_dict()
    ema, plain = shifted(source, 1.0), shifted(source, 2.0)
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    with caplog.at_level(logging.INFO, logger="architectures.checkpoint"):
        model = load_checkpoint(span(), path)
    assert_loaded(model, ema)
    assert "'params_ema'" in caplog.text and "preferred over 'params'" in caplog.text


def test_param_key_picks_the_entry(tmp_path):
    source = span().state_dict()
    ema, plain = shifted(source, 1.0), shifted(source, 2.0)
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    assert_loaded(load_checkpoint(span(), path, param_key="params"), plain)
    assert_loaded(load_checkpoint(span(), path, param_key="params_ema"), ema)


def test_a_missing_param_key_names_the_entries_there(tmp_path):
    path = tmp_path / "net_g.pth"
    torch.save({"params": span().state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"no state_dict under 'params_ema'; it holds \['params'\]"):
        load_checkpoint(span(), path, param_key="params_ema")
    torch.save(span().state_dict(), path)
    with pytest.raises(CheckpointError, match="plain state_dict with no 'params' entry: drop --param-key"):
        load_checkpoint(span(), path, param_key="params")


@pytest.mark.parametrize("wrapper", ["params", "state_dict", "model"])
def test_wrappers_and_module_prefix(wrapper, tmp_path):
    source = shifted(span().state_dict(), 0.5)
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in source.items()}, "iter": torch.tensor(3)}, path)
    assert_loaded(load_checkpoint(span(), path), source)


def test_adapt_state_dict_hook_maps_official_extras():
    class WithExtraKey(nn.Module):
        """Stands for a port whose official checkpoint carries a key it does not use."""

        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 8, 3)

        def adapt_state_dict(self, sd: dict) -> dict:
            return {k: v for k, v in sd.items() if k != "unused"}

    source = {"head.weight": torch.ones(8, 3, 3, 3), "head.bias": torch.zeros(8), "unused": torch.ones(1)}
    assert_loaded(
        load_checkpoint(WithExtraKey(), source), {k: source[k] for k in ("head.weight", "head.bias")}
    )


def test_wrong_scale_names_the_scale_to_pass():
    expected = (
        "a span_esr ch12 x4 deploy checkpoint but the model is span_esr ch12 x2 deploy: pass --scale 4$"
    )
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(span(scale=2), span(scale=4).state_dict())


def test_wrong_width_names_the_variant_to_pass():
    expected = (
        "span_esr ch28 x4 deploy checkpoint but the model is span_esr ch48 x4 deploy: pass --variant ch28$"
    )
    with pytest.raises(CheckpointError, match=expected.replace("(", r"\(")):
        load_checkpoint(span(scale=4, variant="ch48"), span(scale=4, variant="ch28").state_dict())


def test_a_train_form_file_of_another_width_needs_only_the_variant_in_deploy_form():
    train = span(scale=4, variant="ch28", form="train").state_dict()
    with pytest.raises(
        CheckpointError, match=r"ch28 x4 train checkpoint but .* ch48 x4 deploy: pass --variant ch28$"
    ):
        load_checkpoint(span(scale=4, variant="ch48"), train)


def test_a_deploy_file_in_a_train_model_names_variant_and_form():
    deploy = span(scale=4, variant="ch28").state_dict()
    with pytest.raises(CheckpointError, match="pass --variant ch28 --form deploy$"):
        load_checkpoint(span(scale=4, variant="ch48", form="train"), deploy)


def test_another_architecture_is_named_without_a_variant_hint():
    """The issue's case: a SPAN-ESR release loaded into HSPAN or SPAN-light."""
    deploy = span(scale=4, variant="ch28").state_dict()
    for name in ("span_light", "hspan"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(architectures.build(name, 4), deploy)
        message = str(info.value)
        assert message.startswith(
            f"state_dict argument: this file is a span_esr ch28 x4 deploy checkpoint, not {name}"
        )
        assert "build span_esr --variant ch28 --scale 4 --form deploy" in message


def test_missing_and_unexpected_keys_are_listed_and_truncated():
    source = span().state_dict()
    broken = {k.replace("block_", "blk_"): v for k, v in source.items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(span(), broken)
    message = str(info.value)
    assert "matches no registered architecture" in message and "not a span_esr ch12 x2 deploy" in message
    assert "missing keys (36): block_1.c1_r.eval_conv.weight" in message
    assert "unexpected keys (36): blk_1.c1_r.eval_conv.weight" in message
    assert "… and 28 more" in message


def test_shape_mismatch_without_a_known_cause_is_listed():
    source = span().state_dict()
    source["conv_cat.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(1\): conv_cat.bias \(5,\) vs \(12,\)"):
        load_checkpoint(span(), source)


def test_no_state_dict_inside(tmp_path):
    path = tmp_path / "opt.pth"
    torch.save({"optimizer": {"lr": 1e-3}, "iter": 7}, path)
    with pytest.raises(CheckpointError, match="no state_dict found.*optimizer"):
        load_checkpoint(span(), path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_file(content, tmp_path):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save(span().state_dict(), path)
        content = path.read_bytes()[:1000]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad.pth (is damaged.*copy it again|is neither a torch.save)"):
        load_checkpoint(span(), path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Conv2d(3, 3, 1), path)  # a pickled module, as some repositories release
    with pytest.raises(CheckpointError, match="needs Python code to run.*refused for safety") as info:
        load_checkpoint(span(), path)
    assert "weights_only=False" not in str(info.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(span(), "/nonexistent/ckpt.pth")
