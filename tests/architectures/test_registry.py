"""Every registered model × variant × scale × form against the official code's counts
(``results/official/official_code.csv``): the numbers live in that file only."""

from __future__ import annotations

import pytest
import torch

import architectures
from harness.complexity import count_params
from harness.published import official_table
from harness.schema import Inference


def combinations():
    for name, spec in architectures.MODELS.items():
        for variant, scales in spec.scales.items():
            for scale in scales:
                for form in spec.forms:
                    yield pytest.param(
                        name, variant, scale, form, id=f"{name}-{variant or ''}-x{scale}-{form}"
                    )


@pytest.mark.parametrize(("name", "variant", "scale", "form"), combinations())
def test_parameter_counts_equal_the_official_code(name, variant, scale, form):
    table = official_table()
    rows = table[
        (table.model == name)
        & (table.variant == (variant or ""))
        & (table.scale == scale)
        & (table.form == form)
        & table.metric.isin(["params", "params_trainable"])
    ]
    if rows.empty:
        pytest.skip(
            f"not run: official_code.csv records no parameter count of {name} {variant} x{scale} {form}"
        )
    counts = count_params(architectures.build(name, scale, variant, form=form))
    assert {r.metric: counts[r.metric] for r in rows.itertuples()} == {
        r.metric: int(r.value) for r in rows.itertuples()
    }


def test_every_official_row_names_a_registered_model():
    table = official_table()
    for row in table.itertuples():
        spec = architectures.spec(row.model)
        assert row.form in spec.forms
        assert row.scale in spec.scales.get(row.variant or None, ()), row


def test_registry_entries_are_consistent():
    for spec in architectures.MODELS.values():
        assert spec.test_time in set(Inference)
        assert spec.counting.ops in ("fvcore", "multi_adds") and spec.counting.convention in (
            "hr720p",
            "ntire256",
        )
        assert spec.default_variant in spec.scales


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("name", "variant", "scale", "form"), combinations())
def test_every_registered_model_upscales_a_batch_of_three_as_three_single_images(name, variant, scale, form):
    """The model contract for every model × variant × scale × form: (B, 3, h, w) float32 → (B, 3, s·h, s·w)
    float32 with ``model.scale`` = s, finite, and each image of a batch of three the same as alone (no
    cross-talk between batch items: normalisation, attention and padding are per image)."""
    torch.manual_seed(0)
    model = architectures.build(name, scale, variant, form=form).eval()
    x = torch.rand(3, 3, 16, 13)  # SPAN-light needs sides of at least 13
    with torch.no_grad():
        batch = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert model.scale == scale and batch.dtype == torch.float32
    assert batch.shape == (3, 3, 16 * scale, 13 * scale) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-4)  # float32 rounding of batched matmuls
    assert not torch.equal(batch[0], batch[1])  # the images differ, so must their outputs
