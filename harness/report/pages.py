"""Page contexts and rendering: ``build_site`` writes the whole site.

Pages: ``index.html`` (verdicts per paper × tier, checkpoint-tier results, leaderboards with fingerprints and
plots, runtimes per device, static verification, kernel benchmarks), ``model-<key>.html`` per recipe (its
verdicts, runs, per-image tables, visual comparisons, training curve), ``diagnostics.html`` (smoke runs),
``conventions.html`` (fingerprints, knobs and their measured effects) and one page per cited document.

Deterministic: identical inputs give identical bytes (every order is a sort; no build time is written). The
build renders into a temporary folder beside ``out`` and swaps it in only when complete; an ``out`` that holds
something other than a site built here is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness import released, store
from harness.errors import UserError
from harness.files import remove_stale_temps
from harness.measures import MEASURES
from harness.paths import repo_file
from harness.recipes import load as load_recipe
from harness.report import assets, citations, fingerprint, leaderboards, numbers, queries, run_tables
from harness.report.markdown import markdown_tables
from harness.report.plots import PALETTE, complexity_plots, plot
from harness.schema import Profile, Status

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
GENERATOR = "reprosr report"  # the <meta name="generator"> that marks a folder as a site built here
_SAFE = re.compile(r"[A-Za-z0-9_.-]")


def page_key(name: str) -> str:
    """An injective file-name-safe form of ``name``: letters, digits, ``_ . -`` kept, every other character
    (and a leading dot) as ``~`` + its code point in hex, so ``a<b`` and ``a>b`` get different pages."""
    out = []
    for i, ch in enumerate(name):
        keep = _SAFE.fullmatch(ch) and not (i == 0 and ch == ".")
        out.append(ch if keep else f"~{ord(ch):x}~")
    return "".join(out) or "~"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fixed=numbers.fixed,
        scaled=numbers.scaled,
        significant=numbers.significant,
        measured=numbers.measured,
        sortkey=numbers.sort_key,
        cite=citations.segments,
        key=page_key,
    )
    return env


# ------------------------------------------------------------------------------------------ model pages


def _recipe_fields(name: str, run_hashes: list[str]) -> dict:
    try:
        recipe = load_recipe(name)
    except (KeyError, ValueError, OSError) as exc:
        return {"error": f"not available: recipe {name!r} could not be loaded ({exc})", "fields": []}
    fields = [
        {
            "field": f"{s}.{k}",
            "value": json.dumps(v) if isinstance(v, list | bool) else str(v),
            "source": recipe.sources.get(f"{s}.{k}", ""),
        }
        for s, section in recipe.data.items()
        for k, v in section.items()
    ]
    stale = sorted({h for h in run_hashes if h and h != recipe.hash})
    return {"error": "", "hash": recipe.hash, "path": recipe.path.name, "fields": fields, "stale": stale}


def _curve(rows: pd.DataFrame) -> dict | None:
    loss = rows[rows.metric == "train_loss"].sort_values(["run_id", "step"], kind="stable")
    if loss.empty:
        return None
    series = [
        {
            "name": f"run {run_id} ({g.profile.iloc[0]})",
            "color": PALETTE[i % len(PALETTE)],
            "dash": "",
            "filled": True,
            "points": [
                {"x": float(s), "y": v, "label": f"iteration {s}: loss {v:.5g}", "tag": ""}
                for s, v in zip(g.step, g.value, strict=True)
            ],
        }
        for i, (run_id, g) in enumerate(loss.groupby("run_id", sort=True))
    ]
    return plot(series, "iteration", "L1 training loss", "training loss per logged iteration", log_x=False)


def model_page(name: str, inputs: queries.Inputs, artifacts: Path, site: Path) -> dict:
    """Everything ``model.html`` shows for recipe ``name``; published crops are copied under ``site``."""
    rows = inputs.results[inputs.results.recipe == name]
    order = (
        rows[["run_id", "timestamp"]].drop_duplicates().sort_values(["timestamp", "run_id"], kind="stable")
    )
    page_runs, comparisons = [], []
    for run_id in order.run_id:
        run_rows = rows[rows.run_id == run_id]
        page_runs.append(
            {"provenance": run_tables.provenance(run_rows), "per_image": run_tables.per_image(run_rows)}
        )
        items = assets.comparisons(artifacts, run_id)
        copied = assets.copy_crops(artifacts, run_id, items, site, page_key(run_id))
        comparisons += [{**c, "run": run_id} for c in copied]
    verdicts = inputs.verdicts[inputs.verdicts.recipe == name]
    first = rows.iloc[0]
    return {
        "name": name,
        "key": page_key(name),
        "model": first.model,
        "variant": first.variant,
        "scale": int(first.scale),
        "paper": first.paper,
        "smoke_only": set(rows.profile) == {Profile.SMOKE},
        "recipe": _recipe_fields(name, sorted(set(rows.recipe_hash))),
        "verdicts": queries.verdict_records(verdicts),
        "runs": page_runs,
        "comparisons": comparisons,
        "curve": _curve(rows),
    }


# ---------------------------------------------------------------------------------------------- site


def _guard(out: Path) -> None:
    """Refuse to replace a folder that is not a site built here (a mistyped ``--out``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if any(out.iterdir()):
        index = out / "index.html"
        marker = f'<meta name="generator" content="{GENERATOR}">'
        if not index.is_file() or marker not in index.read_text(encoding="utf-8", errors="replace"):
            raise UserError(
                f"--out {out} is not empty and holds no site built by `reprosr report`; "
                "refusing to replace it (choose an empty or new folder)"
            )


def accuracy_sentence(counts: dict) -> str:
    """One paper's accuracy numbers in words: published, checked, reproduced, and why the rest were not
    checked (:func:`.queries.paper_accuracy`)."""
    n, checked, ok = counts["published"], counts["checked"], counts["reproduce"]
    if not n:
        return f"{counts['paper']}: the published tables hold no accuracy number (PSNR/SSIM) of it."
    text = (
        f"{counts['paper']}: {n} published accuracy numbers (PSNR/SSIM); {checked} checked, {ok} reproduce."
    )
    why = []
    if counts["set_missing"]:
        why.append(
            f"{counts['set_missing']} are on benchmark sets that were not available where the evaluated "
            "checkpoints were run (user-provided sets such as the NTIRE validation data)"
        )
    if counts["released_not_evaluated"]:
        why.append(
            f"{counts['released_not_evaluated']} belong to released weights that have not been evaluated in "
            "the committed store (they could not be fetched where it was built: no network)"
        )
    if counts["no_weights"]:
        why.append(
            f"{counts['no_weights']} have no released weights, so only a full training run on a GPU can "
            "check them (none has been published yet)"
        )
    return text + (f" Not checked: {'; '.join(why)}." if why else "")


def _render(out: Path, inputs: queries.Inputs, artifacts: Path) -> None:
    results, verdicts, pub = inputs.results, inputs.verdicts, inputs.published
    recipes = sorted(set(results.recipe) - {""})
    pages = [model_page(name, inputs, artifacts, out) for name in recipes]
    docs = citations.documents()
    boards = leaderboards.leaderboards(inputs)
    models = sorted(set(results.model) | set(pub.model))
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    for board in boards:
        board["plots"] = complexity_plots(board, colors)
    checkpoint, checkpoint_not_run = queries.checkpoint_results(verdicts)
    static = queries.verdict_records(verdicts[verdicts.tier == "static"])
    bench_md = repo_file("benchmarks/RESULTS.md")
    env = _environment()
    common = {
        "generator": GENERATOR,
        "nav": [
            {"href": "index.html", "label": "Leaderboard"},
            {"href": "diagnostics.html", "label": "Diagnostics (smoke runs)"},
            {"href": "conventions.html", "label": "Conventions"},
        ],
        "pages": {p["name"]: p["key"] for p in pages},
        "model_pages": [
            {"href": f"model-{p['key']}.html", "label": p["name"], "smoke": p["smoke_only"]} for p in pages
        ],  # fmt: skip
    }

    def write(name: str, template: str, **context) -> None:
        html = env.get_template(template).render(**common, page=name, **context)
        (out / name).write_text(html, encoding="utf-8")

    zoo = {(c.model, c.variant or "", c.scale) for c in released.RELEASED.values()}
    write(
        "index.html",
        "index.html",
        title="ReproSR leaderboard",
        accuracy=[accuracy_sentence(r) for r in queries.paper_accuracy(verdicts, pub, zoo)],
        summary=queries.verdict_summary(verdicts),
        statuses=[str(s) for s in Status],
        checkpoint=checkpoint,
        checkpoint_not_run=checkpoint_not_run,
        boards=boards,
        runtimes=run_tables.runtimes(inputs),
        runtime_scope=MEASURES["runtime_ms"].convention,
        published_runtimes=run_tables.published_runtimes(pub),
        static=static,
        benchmarks=markdown_tables(bench_md.read_text(encoding="utf-8")) if bench_md.is_file() else None,
        n_results=len(results),
        n_verdicts=len(verdicts),
        n_runs=results.run_id.nunique(),
    )
    for p in pages:
        write(f"model-{p['key']}.html", "model.html", title=f"{p['name']} — ReproSR", m=p)
    write(
        "diagnostics.html",
        "diagnostics.html",
        title="Diagnostics: smoke runs — ReproSR",
        smoke=run_tables.diagnostics(inputs),
        runtimes=run_tables.runtimes(inputs, smoke=True),
    )
    write(
        "conventions.html",
        "conventions.html",
        title="Evaluation conventions — ReproSR",
        metric_text=run_tables.metric_conventions(results),
        effects=run_tables.knob_effects(results),
        statements=sorted(fingerprint.PUBLISHED_STATEMENTS.items()),
    )
    for d in docs:
        write(d["page"], "document.html", title=f"{d['repo_path']} — ReproSR", doc=d)


def build_site(out: Path, results_root: Path | None = None, artifacts_root: Path | None = None) -> Path:
    """Render the site into ``out`` from the store at ``results_root`` (default: the committed store,
    :data:`harness.store.COMMITTED_ROOT`) and the run artifacts under ``artifacts_root`` (default
    ``results/artifacts``). ``out`` is replaced as a whole once the new site is complete. Returns
    ``out/index.html``."""
    out = Path(out).resolve()
    _guard(out)
    inputs = queries.load(Path(results_root) if results_root is not None else store.COMMITTED_ROOT)
    artifacts = Path(artifacts_root) if artifacts_root is not None else repo_file("results/artifacts")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent)  # `.building-<pid>-…` / `.old-<pid>-…` folders of killed builds
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent))
    try:
        _render(building, inputs, artifacts)
        os.chmod(building, 0o755)
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{building.name.rsplit('-', 1)[-1]}")
        if out.exists():
            out.rename(old)
        building.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out / "index.html"
