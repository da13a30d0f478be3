"""The leaderboard site: a static HTML site built from the committed results store (``reprosr report``).

A pure reader: it reads the store (:mod:`harness.store`), the published tables, the recipes, the published run
artifacts (``results/artifacts/<run_id>/``, written by ``reprosr publish``) and the cited documents; it
imports no run stage. Modules: :mod:`.queries` (the store and the verdict views), :mod:`.leaderboards`,
:mod:`.run_tables` (runtimes, smoke runs, knob effects, model-page tables), :mod:`.fingerprint` (the
conventions of a number), :mod:`.numbers` (number formatting), :mod:`.plots` (SVG geometry),
:mod:`.markdown` (tables of ``benchmarks/RESULTS.md``), :mod:`.assets` (published crops copied into the
site), :mod:`.citations` (sources as links), :mod:`.pages` (page contexts and rendering).
"""

from harness.report.pages import build_site

__all__ = ["build_site"]
