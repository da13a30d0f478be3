"""The cost printed before a full run: measured rate, extrapolated hours, checkpoint size; run untouched."""

from __future__ import annotations

import math

import torch

from harness.training.cost import estimate
from harness.training.patches import PatchStream
from tests.helpers import TinySR, tiny_pairs, tiny_plan


def test_estimate_measures_rate_and_checkpoint_and_leaves_the_model_alone():
    plan = tiny_plan(iterations=1000, keep="best")
    torch.manual_seed(0)
    model = TinySR()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cost = estimate(plan, model, PatchStream(tiny_pairs(), plan.sampling), torch.device("cpu"), timed=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()), "the estimate must not shift the run's random draws"
    assert cost.its_per_s > 0 and math.isclose(cost.hours, 1000 / cost.its_per_s / 3600)
    assert (cost.iterations, cost.images, cost.samples) == (1000, 3, 1000 * plan.global_batch)
    n_params = sum(p.numel() for p in model.parameters())
    # last.pt holds the weights, the EMA and Adam's two moments: at least 4 float32 copies
    assert cost.checkpoint_bytes > 4 * 4 * n_params
    assert cost.disk_bytes > cost.checkpoint_bytes  # + final.pt and best.pt
    text = str(cost)
    assert "1,000 iterations" in text and "iterations/s" in text and " h " in text and "MiB" in text
