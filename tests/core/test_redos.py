"""No input stalls redaction: pathological text for every built-in detector and a catastrophic
project pattern go through the real hook while the daemon keeps answering `GET /v1/status`."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from elsabro.core.redact.detectors import DETECTORS
from support import DaemonProcess, World, configure, payload, run_hook

FIELD_CHARS = 96 * 1024
# The one timed assertion the redaction work asks for: status answers within 100 ms throughout.
STATUS_LIMIT_S = 0.1


def _fill(unit: str) -> str:
    return unit * (FIELD_CHARS // len(unit))


def pathological_fields() -> list[dict[str, str]]:
    """For each detector and each of its triggers: the trigger repeated, and repeated with the
    character its expression looks for next; then long runs of key-like characters."""
    fields = [
        {"repeated": _fill(trigger), "assigned": _fill(trigger + "=")}
        for detector in DETECTORS
        for trigger in detector.triggers
    ]
    fields.append(
        {
            "runs": _fill("a"),
            "keyish": "sk-" + _fill("A1-_"),
            "token-run": "TOKEN" + _fill("A_-9"),
            "url": "https://" + _fill(":@"),
            "pem": _fill("-----BEGIN RSA PRIVATE KEY-----\n"),
            "flags": "mysql " + _fill(" -p"),
            "json": _fill('"token": "'),
            "catastrophic": "a" * 29 + "!",  # no match: a backtracking engine tries 2**29 ways
            "matched": "a" * 29,
        }
    )
    return fields


def _bash(stdout: dict[str, str]) -> dict[str, Any]:
    body = payload("PostToolUse")
    body["tool_response"] = {"stdout": "", "stderr": "", "interrupted": False, "isImage": False, **stdout}
    return body


def test_the_daemon_keeps_answering_while_it_redacts_pathological_input(world: World) -> None:
    configure(world, {"redaction": {"patterns": [{"name": "nested", "regex": "(a+)+$"}]}})
    DaemonProcess(world).start()
    client = world.client()
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            started = time.monotonic()
            client.status()
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)

    fields = pathological_fields()
    bodies = [json.dumps(_bash(stdout)).encode() for stdout in fields]  # built before timing starts
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for body in bodies:  # the hook returns once the daemon has stored the event
            assert run_hook(world, body).returncode == 0
    finally:
        done.set()
        poller.join(10)
    # Read only now: parsing megabytes of log in this process would hold up the poller.
    assert len(world.events()) >= len(fields)
    assert latencies and max(latencies) < STATUS_LIMIT_S, f"slowest status: {max(latencies) * 1000:.0f} ms"
    stored = world.events()[-1]["payload"]["tool_response"]
    assert stored["matched"] == "[REDACTED:nested]"  # the project's pattern did run


@pytest.mark.parametrize("expression", [r"(a)\1", r"(?<=x)y", r"(?=a)b"])
def test_a_pattern_that_cannot_run_in_linear_time_is_refused_at_load(world: World, expression: str) -> None:
    configure(world, {"redaction": {"patterns": [{"name": "bad", "regex": expression}]}})
    result = world.cli("config", "check", check=False)
    assert result.returncode == 1
    assert "must run in linear time" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
