"""The benchmark suite runs end to end and reports every figure as a number.

Only presence and type are checked, never size: the suite runs on shared, noisy
machines, and whether a target is met is the report's business, not a test's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FIGURES = [
    # hook cost per event
    "hook_up_ms",
    "hook_spool_ms",
    "floor_sh_cat_ms",
    "floor_curl_version_ms",
    "python3_forwarder_ms",
    "python3_path_forwarder_ms",
    "python3_over_hook_ratio",
    # ingest
    "ingest_1proc_events_per_s",
    "ingest_4proc_events_per_s",
    "ingest_16proc_events_per_s",
    "ingest_batch_events_per_s",
    "ack_latency_p50_ms",
    "ack_latency_p99_ms",
    "ack_latency_achieved_per_s",
    # fan-out
    "fanout_append_latency_p50_ms",
    "fanout_append_latency_p99_ms",
    "fanout_exec_latency_p50_ms",
    "fanout_exec_latency_p99_ms",
    "webhook_1ep_deliveries_per_s",
    "webhook_10ep_deliveries_per_s",
    "webhook_100ep_deliveries_per_s",
    "webhook_1ep_latency_p50_ms",
    "webhook_10ep_latency_p50_ms",
    "webhook_100ep_latency_p50_ms",
    # the Python EventBus
    "bus_client_publish_p50_ms",
    "bus_client_publish_p99_ms",
    "bus_embedded_file_publish_p50_ms",
    "bus_embedded_file_publish_p99_ms",
    "bus_client_delivery_events_per_s",
    "bus_embedded_delivery_events_per_s",
    # scan
    "scan_events_per_s",
    "session_query_ms",
    "last_event_query_ms",
    # footprint
    "daemon_startup_ms",
    "daemon_rss_idle_mib",
    "daemon_rss_after_ingest_mib",
    "daemon_rss_peak_mib",
    "cli_publish_ms",
    "cli_history_ms",
]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(600)
def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    document = json.loads(out.read_text())
    figures = document["figures"]
    missing = [name for name in FIGURES if name not in figures]
    assert not missing, f"figures missing from the results: {missing}"
    for name in FIGURES:
        figure = figures[name]
        for key in ("median", "min", "max"):
            assert _is_number(figure[key]), f"{name}.{key} is not a number: {figure[key]!r}"
        assert figure["samples"] and all(_is_number(s) for s in figure["samples"]), name
        assert isinstance(figure["unit"], str) and figure["unit"], name
    assert document["not_yet_measurable"], "the placeholder list of not-yet-measurable figures is gone"
    for name in FIGURES:  # the printed table names every figure too
        assert f"| {name} |" in result.stdout, f"{name} missing from the Markdown table"
