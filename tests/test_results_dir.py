"""results/ holds results: the figures, tables, configs, curves and pictures the docs cite, and
no logs or markers that the runs producing them left behind."""

from __future__ import annotations

from conftest import ROOT

RESULT_SUFFIXES = {".json", ".jsonl", ".txt", ".yaml", ".png", ".md"}


def test_results_holds_results_only():
    files = [path for path in (ROOT / "results").rglob("*") if path.is_file()]
    assert files
    others = [str(p.relative_to(ROOT)) for p in files if p.suffix not in RESULT_SUFFIXES]
    assert not others, f"not results: {others}"
