"""Verification: measured numbers against outside references, in three tiers, each with its own tolerance.

- static: parameter counts of our port vs the official code's counts (`results/official/`), exact to the
  unit; vs the paper's rounded counts (`results/published/`), equal once rounded to the published digits
  (both compared as counts); MACs under the paper's rule and input size (``ModelSpec.counting``) vs
  published Multi-Adds/FLOPs, within 0.5 % relative, and vs the official code's fvcore counts, equal to
  their printed digits.
- checkpoint: PSNR/SSIM of a released or given checkpoint vs published and vs the official code's own
  output, within ±0.01 dB / ±0.0002.
- retrain: PSNR/SSIM of the recipe's complete full training runs (≥ 3 seeds: mean, std, 95 % interval) vs
  published (``harness/retrain.py``).

Every verdict is a :class:`~harness.verdicts.Verdict` whose status is one of :class:`~harness.schema.Status`:
pass, fail, indicative (a low-confidence reference), not run (with the reason) or no published value.
Where several sources publish one cell, the most confident of each distinct value is used.
"""

from __future__ import annotations

from pathlib import Path

import architectures
from harness import data, published, released, retrain
from harness.complexity import CONVENTIONS, complexity, count_params
from harness.evaluate import ALL_CONVENTIONS, TestTime, evaluate
from harness.recipes import Recipe, load
from harness.schema import Tier
from harness.verdicts import Reference, Subject, Verdict, format_verdicts, judge, rounds_to

__all__ = ["Verdict", "format_verdicts", "judge", "rounds_to", "verify_recipe"]

CHECKPOINT_TOL = {"psnr_y": 0.01, "ssim_y": 0.0002, "psnr_rgb": 0.01}
MACS_REL_TOL = 0.005
# The published metric that reports MACs under each op-counting rule.
PUBLISHED_MACS = {"multi_adds": "multi_adds", "fvcore": "flops"}
QUALITY = ("psnr_y", "ssim_y")  # judged on every benchmark set, published or not
EXTRA_QUALITY = ("psnr_rgb",)  # judged where a source publishes it (NTIRE: RGB PSNR)


def _subject(tier: Tier, recipe: Recipe, form: str = "", dataset: str = "") -> Subject:
    return Subject(tier, recipe.model, recipe.variant or "", recipe.scale, form, dataset)


def distinct(refs: list[Reference]) -> list[Reference]:
    """The most confident reference of each distinct value (``refs`` come most confident first)."""
    seen, out = set(), []
    for ref in refs:
        if ref.value not in seen:
            seen.add(ref.value)
            out.append(ref)
    return out


def static_verdicts(recipe: Recipe) -> tuple[list[Verdict], list[dict]]:
    """Tier 1: parameter counts (every form of the model) and MACs, measured now from our port.

    Returns the verdicts and the measurements (results-store columns metric, value, form, unit, convention).
    """
    spec = architectures.spec(recipe.model)
    verdicts, measured = [], []
    counts = {}
    models = {
        form: architectures.build(recipe.model, recipe.scale, recipe.variant, form=form)
        for form in spec.forms
    }
    for form, model in models.items():
        counts[form] = count_params(model)
        subject = _subject(Tier.STATIC, recipe, form)
        for metric in ("params", "params_trainable"):
            value = counts[form][metric]
            which = "all" if metric == "params" else "requires_grad"
            convention = f"{form} form, {which}"
            measured.append(
                {"metric": metric, "value": value, "form": form, "unit": "", "convention": convention}
            )
            ref = published.official(recipe.model, recipe.variant, recipe.scale, form, "", metric)
            if ref is not None:
                verdicts.append(judge(subject, metric, value, ref, 0.0))
    form = spec.eval_form
    subject = _subject(Tier.STATIC, recipe, form)
    # The papers print millions rounded to a few digits: compared as counts, within the rounding.
    refs = distinct(published.references(recipe.model, recipe.variant, recipe.scale, None, "params"))
    for ref in refs or [None]:
        if ref is None:
            verdicts.append(judge(subject, "params", counts[form]["params"], None, 0.0))
        else:
            millions = 1e6 if ref.unit == "M" else 1.0
            tolerance = rounds_to(ref.text or ref.value) * millions
            verdicts.append(judge(subject, "params", counts[form]["params"], ref.scaled(millions), tolerance))
    verdicts += _macs_verdicts(recipe, spec, subject, measured, models[form])
    return verdicts, measured


def _macs_verdicts(recipe: Recipe, spec, subject: Subject, measured: list[dict], model) -> list[Verdict]:
    """MACs (G) vs the paper's Multi-Adds/FLOPs (±0.5 %, under the paper's rule and input size; counted under
    that rule even when the paper publishes none) and vs the official code's own fvcore counts (equal to
    their printed digits); each count is made once, on the one model built for the static tier."""
    rule = spec.counting
    key = (recipe.model, recipe.variant, recipe.scale)
    paper = distinct(published.references(*key, None, PUBLISHED_MACS[rule.ops]))
    checks = [(rule.convention, rule.ops, ref, MACS_REL_TOL, True) for ref in paper]
    for convention in CONVENTIONS:
        ref = published.official(*key, subject.form, "", f"macs_{convention}")
        if ref is not None:  # the official code's counts are fvcore's
            checks.append((convention, "fvcore", ref, rounds_to(ref.text), False))
    if not paper:  # still counted under the paper's rule, so every model has its MACs
        checks.insert(0, (rule.convention, rule.ops, None, MACS_REL_TOL, True))
    verdicts = []
    macs_g: dict[tuple[str, str], float] = {}
    for convention, ops, ref, tolerance, relative in checks:
        if (convention, ops) not in macs_g:
            c = complexity(model, recipe.scale, convention=convention, ops=ops)
            macs_g[convention, ops] = c.macs / 1e9
            measured.append({"metric": "macs", "value": c.macs / 1e9, "form": subject.form, "unit": "G",
                             "convention": f"{convention}, {ops} op rule"})  # fmt: skip
        macs = macs_g[convention, ops]
        verdicts.append(judge(subject, f"macs_{convention}", macs, ref, tolerance, relative=relative))
    return verdicts


def _compare_means(
    tier: Tier,
    recipe: Recipe,
    dataset: str,
    means: dict[str, float],
    tolerances: dict[str, float],
    form: str,
    official: bool,
) -> list[Verdict]:
    """Set means vs the published values (and, if ``official``, vs the official code's outputs)."""
    subject = _subject(tier, recipe, form, dataset)
    out = []
    for metric in (*QUALITY, *EXTRA_QUALITY):
        value = means.get(metric)
        refs = distinct(published.references(recipe.model, recipe.variant, recipe.scale, dataset, metric))
        if not refs and metric in QUALITY:
            out.append(judge(subject, metric, value, None, tolerances[metric]))
        out += [judge(subject, metric, value, ref, tolerances[metric]) for ref in refs]
        ref = published.official(recipe.model, recipe.variant, recipe.scale, form, dataset, metric)
        if official and ref is not None:
            out.append(judge(subject, metric, value, ref, tolerances[metric]))
    return out


def checkpoint_verdicts(
    recipe: Recipe,
    model,
    data_root: Path | None,
    checkpoint_label: str,
    form: str,
    save_dir: Path | None = None,
) -> tuple[list[Verdict], dict[str, object]]:
    """Tier 2: a checkpoint evaluated on the recipe's benchmark sets with the paper's test-time procedure.

    Returns the verdicts and, per evaluated set, its EvalResult (for the results store); ``save_dir`` keeps
    the SR outputs as ``<save_dir>/<dataset>/<image>.png``.
    """
    verdicts, results = [], {}
    for dataset in recipe.eval.benchmarks:
        try:
            pairs = data.benchmark_pairs(dataset, recipe.scale, data_root)
        except FileNotFoundError:  # the reason names no folder: verdicts are published
            reason = f"{dataset} is not in the data root (`reprosr data fetch {dataset}` or --data-root DIR)"
            verdicts += checkpoint_not_run(recipe, reason, [dataset])
            continue
        result = evaluate(
            model,
            pairs,
            recipe.scale,
            test_time=TestTime(recipe.eval.inference),
            conventions=ALL_CONVENTIONS,
            save_dir=None if save_dir is None else save_dir / dataset,
        )
        results[dataset] = result
        verdicts += _compare_means(Tier.CHECKPOINT, recipe, dataset, result.mean, CHECKPOINT_TOL, form, True)
    for v in verdicts:
        v.reason = f"{checkpoint_label}; {v.reason}"
    return verdicts, results


def verify_recipe(name: str, checkpoint: str | None = None, data_root: Path | None = None) -> list[Verdict]:
    """`reprosr verify RECIPE`: static tier now, checkpoint tier if a checkpoint is given or released and
    downloaded, retrain tier from the complete full runs in the results store (``harness.retrain``)."""
    recipe = load(name)
    verdicts, _ = static_verdicts(recipe)
    verdicts += checkpoint_tier(recipe, checkpoint, data_root)[0]
    return verdicts + retrain.stored_verdicts(recipe)


def checkpoint_tier(
    recipe: Recipe, checkpoint: str | None, data_root: Path | None, save_dir: Path | None = None
) -> tuple[list[Verdict], dict]:
    """Tier 2 for ``recipe``: the given checkpoint, else its released one if downloaded, else "not run"."""
    runtime = runtime_verdicts(recipe)
    model, label, form, reason = load_recipe_checkpoint(recipe, checkpoint)
    if model is None:
        return checkpoint_not_run(recipe, reason) + runtime, {}
    verdicts, results = checkpoint_verdicts(recipe, model, data_root, label, form, save_dir)
    return verdicts + runtime, results


def checkpoint_not_run(recipe: Recipe, reason: str, datasets: list[str] | None = None) -> list[Verdict]:
    """The checkpoint verdict of every PSNR/SSIM cell of ``datasets`` (default: the recipe's benchmark sets)
    when nothing could be measured: "not run" with ``reason`` where a published value exists (naming it),
    "no published value" elsewhere."""
    key = (recipe.model, recipe.variant, recipe.scale)
    form = architectures.spec(recipe.model).eval_form
    return [
        judge(_subject(Tier.CHECKPOINT, recipe, form, dataset), m, None, published.lookup(*key, dataset, m),
              CHECKPOINT_TOL[m], not_run=reason)
        for dataset in (recipe.eval.benchmarks if datasets is None else datasets)
        for m in QUALITY
    ]  # fmt: skip


def runtime_verdicts(recipe: Recipe) -> list[Verdict]:
    """A published runtime is never compared here: it was timed on the authors' GPU and protocol (NTIRE:
    average over its validation set on an RTX 3090), so the verdict says so; ReproSR's own per-image
    wall times are in the results store beside the scores they belong to."""
    pub = published.lookup(recipe.model, recipe.variant, recipe.scale, None, "runtime_ms")
    if pub is None:
        return []
    reason = (
        f"published {pub.value} ms is '{pub.convention}'; that device and protocol were not run here — "
        "compare on the same GPU and images"
    )
    subject = _subject(Tier.CHECKPOINT, recipe, architectures.spec(recipe.model).eval_form)
    return [judge(subject, "runtime_ms", None, pub, 0.0, not_run=reason)]


def load_recipe_checkpoint(recipe: Recipe, checkpoint: str | None):
    """(model, label, form, "") for a given checkpoint (path or released name), or for the recipe's released
    one if already downloaded; (None, "", form, reason) otherwise. Released ones are fetched only when named.
    A re-parameterisable model is evaluated in its deploy form, which loads both checkpoint forms."""
    form = architectures.spec(recipe.model).eval_form
    if checkpoint is None:
        entry = released.lookup(model=recipe.model, variant=recipe.variant, scale=recipe.scale)
        if entry is None:
            return (
                None,
                "",
                form,
                "no released checkpoint of this model/variant/scale is known; pass --checkpoint",
            )
        if not released.cached_path(entry.name).exists():
            return None, "", form, (
                f"released checkpoint {entry.name} is not downloaded; "
                f"`reprosr verify {recipe.name} --checkpoint {entry.name}` fetches it"
            )  # fmt: skip
        checkpoint = entry.name
    path = released.resolve(checkpoint)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant, form=form)
    return architectures.load_checkpoint(model, path), f"checkpoint {released.label(checkpoint)}", form, ""
