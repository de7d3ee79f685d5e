"""`python -m sync check`: is everything the sync needs there, on both systems and in storage?

Metadata and describe calls only (no data read but one row per stream from the links table of earlier versions, to
report links that `python -m sync migrate-links` has still to move; nothing written but the state tables'
creation). A pure core (rules.evaluate: mapping + metadata -> CheckResults) under a thin shell (gather.py) that reads
the metadata and turns connector errors into lines naming the setting to fix (explain.py).
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from sync.check.gather import run_check
from sync.check.model import CheckReport, CheckResult
from sync.check.rules import evaluate

STYLES = {"ok": "green", "missing": "yellow", "fail": "bold red", "info": "cyan"}
INDENT = " " * 18


def print_report(report: CheckReport, console: Console) -> None:
    for result in report.results:
        line = Text(f"{result.status.upper():<8}", style=STYLES[result.status])
        line.append(f" {result.system:<9}{result.item}: {result.message}")
        console.print(line, soft_wrap=True)
        if result.hint:
            console.print(Text(f"{INDENT}fix: {result.hint}", style="dim"), soft_wrap=True)
    problems = report.problems()
    if problems:
        counts = {s: sum(r.status == s for r in problems) for s in ("missing", "fail")}
        console.print(
            f"{counts['missing']} missing, {counts['fail']} failed, of {len(report.results)} checks", highlight=False
        )
    else:
        console.print(f"all {len(report.results)} checks passed", style="green")


__all__ = ["CheckReport", "CheckResult", "evaluate", "print_report", "run_check"]
