"""Short versions of the reliability runs in bench/: kill -9 under load, and a load run
against flapping webhook receivers.

Only reliability is asserted (nothing lost, nothing stored twice, the chain intact,
every event delivered, nothing stuck), never speed or memory: those are the benchmarks'
business (bench/kill_loop.py and bench/load_run.py run the long versions).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import kill_loop
import load_run


@pytest.mark.timeout(300)
def test_kill_9_loop_loses_nothing_and_subscriptions_catch_up() -> None:
    result = kill_loop.run(3, max_delay_s=1.0)
    assert result["error"] is None, result
    assert result["iterations"] == 3
    assert result["events_acknowledged"] > 0
    assert result["lost"] == 0, result["violation_messages"]
    assert result["duplicated_in_log"] == 0, result["violation_messages"]
    assert result["gap_failures"] == 0, result["violation_messages"]
    assert result["verify_failures"] == 0, result["violation_messages"]
    assert result["torn_batches"] == 0, result["violation_messages"]
    # Caught up: every stored event each subscription selects was handled (the run waits for
    # lag 0 after every restart, and fails with an error if that never comes).
    assert result["skipped_by_subscriptions"] == 0, result["violation_messages"]
    assert result["redelivery_bound_violations"] == 0, result["violation_messages"]
    assert result["violations"] == 0, result["violation_messages"]


@pytest.mark.timeout(300)
def test_load_run_against_flapping_receivers_delivers_everything() -> None:
    plan = load_run.Plan(duration_s=12.0, rate=200.0, sample_s=1.0, flap_unit_s=0.4, drain_timeout_s=180.0)
    result = load_run.run(plan)
    reliability = [f for f in result["failures"] if not f.startswith(("rss_mib not flat", "fds not flat"))]
    assert not reliability, reliability
    assert result["events_acknowledged"] > 0
    assert result["lost"] == 0
    assert result["duplicated_in_log"] == 0
    assert result["gapless"] and result["verify_intact"]
    assert result["drained"] and not result["stuck"]
    assert result["dead_letters"] == 0
    for name, endpoint in result["endpoints"].items():
        assert endpoint["missing"] == 0, name
        # The receivers really flapped: failing phases were met and survived.
        assert endpoint.get("500", 0) + endpoint.get("slow", 0) > 0, (name, endpoint)
    assert result["subscription"]["missing"] == 0
