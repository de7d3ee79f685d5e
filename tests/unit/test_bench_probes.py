"""The benchmarks time the engine by wrapping named functions: a rename in sync/ must not break them silently."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def probe_targets() -> list[tuple[str, str | None, str, str]]:
    sys.path.insert(0, str(BENCH))
    try:
        engine_probe = importlib.import_module("engine_probe")
        bench_full_sync = importlib.import_module("bench_full_sync")
        bench_streams = importlib.import_module("bench_streams")
    finally:
        sys.path.remove(str(BENCH))
    return [*engine_probe.TARGETS, *bench_full_sync.TARGETS, *bench_streams.ONE_WAY_TARGETS]


@pytest.mark.parametrize("target", probe_targets(), ids=lambda t: f"{t[0]}.{t[1] or ''}.{t[2]}")
def test_every_probe_target_exists(target: tuple[str, str | None, str, str]) -> None:
    module_name, class_name, attribute, _ = target
    owner = importlib.import_module(module_name)
    if class_name:
        owner = getattr(owner, class_name)
    inspect.getattr_static(owner, attribute)  # raises AttributeError when the target was renamed


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("bench_*.py")))
def test_every_bench_script_starts(script: str) -> None:
    """Each benchmark imports what it needs when run as a script, as the README says (`--help` starts nothing)."""
    run = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage:" in run.stdout


def test_bench_peers_help_names_its_size_and_what_it_swaps() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH / "bench_peers.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--records" in run.stdout and "default 10,000" in run.stdout
    assert "token URL" in run.stdout and "TLS verification stays on" in run.stdout


def test_bench_streams_help_names_its_size_and_profile() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH / "bench_streams.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    text = " ".join(run.stdout.split())
    assert "--records" in text and "default 10,000" in text
    assert "--profile" in text and "default realistic" in text


def bench_streams() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("bench_streams")
    finally:
        sys.path.remove(str(BENCH))


def test_bench_streams_flags_a_reference_read_per_record_and_passes_batched_reads() -> None:
    bench = bench_streams()
    linked = (
        {"by_table_operation": {"RetrieveEntityChanges:contact": 2}},
        {"by_object": {"leads.sync": 34, "leads.query": 34}},
    )
    batched = ({"by_table_operation": {"RetrieveEntityChanges:contact": 2, "RetrieveMultiple:account": 1}}, {})
    by_id = ({"by_table_operation": {"Retrieve:account": 10_000}}, {})
    from_marketo = ({"by_table_operation": {}}, {"by_object": {"companies.query": 34, "companies.sync": 34}})
    assert bench.reference_reads(*linked) == (0, 0, 0)
    assert bench.reference_reads(*batched) == (0, 1, 0)
    assert bench.reference_reads(*by_id) == (10_000, 0, 0)
    assert bench.reference_reads(*from_marketo) == (0, 0, 34)
    assert not bench.per_record_resolution(*bench.reference_reads(*linked))
    assert not bench.per_record_resolution(*bench.reference_reads(*batched))
    assert bench.per_record_resolution(*bench.reference_reads(*by_id))
    assert bench.per_record_resolution(*bench.reference_reads(*from_marketo))


def test_links_free_drops_only_the_lead_links_transactions_and_puts_the_sender_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sync.state.links as links
    from sync.state.keys import encode_key

    sent: list[str] = []
    monkeypatch.setattr(links, "submit_upserts", lambda table, rows: sent.append(rows[0]["PartitionKey"]))
    sys.path.insert(0, str(BENCH))
    try:
        bench_full_sync = importlib.import_module("bench_full_sync")
    finally:
        sys.path.remove(str(BENCH))
    recorder = links.submit_upserts
    with bench_full_sync.lead_links_free():
        for partition in ("lead|D|03", "lead|M|00", "leadership|D|01", "account|D|01"):
            links.submit_upserts(None, [{"PartitionKey": encode_key(partition)}])
    assert sent == [encode_key("leadership|D|01"), encode_key("account|D|01")]
    assert links.submit_upserts is recorder
