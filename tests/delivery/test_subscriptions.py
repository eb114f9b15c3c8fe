"""Subscriptions with a real daemon and real handler processes.

Matching (`*` versus `#`, JMESPath filters), retries and dead letters, timeouts that
kill a handler's whole process group, durable cursors across kill -9 (with the hook's
spool), manual acks, queue groups, hot reload and invalid edits, and the CLI around
them: `wait`, `subscriptions list|test`, `ack`/`nack`, `dlq`, `config check|schema`.

Handlers are small `sh` scripts; `append` handlers write JSON lines into files under the
project. Progress is awaited with deadlines (`wait_until`), usually on the daemon's own
`/v1/subscriptions` status (lag 0 and nothing in flight means every event was handled);
the few short sleeps only prove that something does NOT happen.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from elsabro.config import trust
from elsabro.core.topics import matches
from support import FIXTURES, REPO, DaemonProcess, World, configure, wait_until

HOOK = REPO / "hooks" / "elsabro-hook.sh"
FAILED = "event.handler.failed"


# -- helpers ---------------------------------------------------------------------------


def config_path(world: World) -> Path:
    return world.project / ".elsabro" / "config.json"


def write_config(world: World, subscriptions: list[dict[str, Any]]) -> None:
    """Write `.elsabro/config.json` as an editor that saves atomically would."""
    path = config_path(world)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    temporary = path.with_name("config.json.partial")
    raw = json.dumps({"subscriptions": subscriptions}, indent=1)
    temporary.write_text(raw)
    trust.record(world.settings.state_dir, world.project, raw.encode())  # as `elsabro trust` would
    os.replace(temporary, path)


def append_sub(name: str, selector: str, path: str, **extra: Any) -> dict[str, Any]:
    """An `append` subscription; a selector with a wildcard is a pattern, else a topic."""
    key = "pattern" if "*" in selector or "#" in selector else "topic"
    return {"name": name, key: selector, "handler": {"type": "append", "path": path}, **extra}


def exec_sub(name: str, selector: str, script: str, **extra: Any) -> dict[str, Any]:
    key = "pattern" if "*" in selector or "#" in selector else "topic"
    return {"name": name, key: selector, "handler": {"type": "exec", "argv": ["sh", "-c", script]}, **extra}


def lines_of(path: Path) -> list[str]:
    """The complete lines of a file a handler appends to (none if it does not exist yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines_of(path)]


def status(world: World) -> dict[str, dict[str, Any]]:
    rows = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
    return {row["name"]: row for row in rows}


def settled(world: World) -> bool:
    """Every subscription has handled everything up to the head of the log."""
    rows = status(world).values()
    return bool(rows) and all(row["lag"] == 0 and row["inFlight"] is None for row in rows)


def dead_letters(world: World) -> list[dict[str, Any]]:
    return records(world.project / ".elsabro" / "deadletters.jsonl")


def logged(world: World, topic: str) -> list[dict[str, Any]]:
    return [r for r in world.events() if r["topic"] == topic]


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    proc = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return proc.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def retry_cli(world: World, *args: str, what: str) -> subprocess.CompletedProcess[str]:
    """Run a CLI command until it succeeds (an ack races the handler's exit by a few ms)."""
    return wait_until(
        lambda: (result := world.cli(*args, check=False)).returncode == 0 and result,
        timeout_s=10,
        what=what,
    )


def run_hook(world: World, body: dict[str, Any]) -> None:
    env = {**world.env, "CLAUDE_PROJECT_DIR": str(world.project), "ELSABRO_BIN": "/bin/false"}
    result = subprocess.run(
        ["/bin/sh", str(HOOK)], input=json.dumps(body).encode(), env=env, capture_output=True, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


# -- matching --------------------------------------------------------------------------


def test_each_subscription_gets_exactly_the_topics_its_selector_and_filter_match(world: World) -> None:
    write_config(
        world,
        [
            append_sub("exact", "tool.a", "out/exact.jsonl"),
            append_sub("star", "tool.*", "out/star.jsonl"),
            append_sub("hash", "tool.#", "out/hash.jsonl"),
            append_sub("failed", "tool.*.failed", "out/failed.jsonl"),
            append_sub("everything", "#", "out/everything.jsonl"),
            append_sub("big", "#", "out/big.jsonl", filter="payload.n > `2`"),
        ],
    )
    DaemonProcess(world).start()
    published = [
        ("tool", 1),
        ("tool.a", 2),
        ("tool.b", 3),
        ("tool.a.b", 4),
        ("tool.bash.failed", 5),
        ("tool.mcp.x.failed", 0),
        ("tools.a", 9),
        ("other.tool", 7),
        ("note", None),  # null is not a number: the comparison is null, not truthy
    ]
    client = world.client()
    for topic, n in published:
        client.publish({"topic": topic, "payload": {"n": n}})
    wait_until(lambda: settled(world), what="every subscription to handle every event")

    def got(name: str) -> list[tuple[str, Any]]:
        return [(r["topic"], r["payload"]["n"]) for r in records(world.project / "out" / f"{name}.jsonl")]

    assert got("exact") == [("tool.a", 2)]
    assert got("star") == [("tool.a", 2), ("tool.b", 3)]  # one segment: not `tool`, not `tool.a.b`
    assert got("hash") == [  # zero or more segments
        ("tool", 1),
        ("tool.a", 2),
        ("tool.b", 3),
        ("tool.a.b", 4),
        ("tool.bash.failed", 5),
        ("tool.mcp.x.failed", 0),
    ]
    assert got("failed") == [("tool.bash.failed", 5)]
    assert got("everything") == published
    assert got("big") == [
        ("tool.b", 3),
        ("tool.a.b", 4),
        ("tool.bash.failed", 5),
        ("tools.a", 9),
        ("other.tool", 7),
    ]


def test_an_event_the_filter_cannot_evaluate_is_skipped_and_the_subscription_keeps_flowing(
    world: World,
) -> None:
    """JMESPath raises on some events (a string ordered against a number): that is no match."""
    write_config(world, [append_sub("big", "#", "big.jsonl", filter="payload.n > `2`")])
    DaemonProcess(world).start()
    client = world.client()
    for n in (5, "10", 7):
        client.publish({"topic": "metric.sample", "payload": {"n": n}})
    wait_until(
        lambda: len(lines_of(world.project / "big.jsonl")) == 2,
        timeout_s=5,
        what="`big` to get past the event its filter cannot evaluate (its consumer died on it)",
    )
    assert [r["payload"]["n"] for r in records(world.project / "big.jsonl")] == [5, 7]
    wait_until(lambda: settled(world), timeout_s=5, what="`big` to reach the head of the log")


# -- retries and dead letters ------------------------------------------------------------


def test_a_handler_that_fails_twice_then_succeeds_is_retried_without_a_dead_letter(
    world: World, tmp_path: Path
) -> None:
    attempts, handled = tmp_path / "attempts", tmp_path / "handled.json"
    script = (
        f'echo "$ELSABRO_ATTEMPT" >> {attempts}\n'
        f'[ "$(wc -l < {attempts})" -ge 3 ] || {{ echo "not yet" >&2; exit 1; }}\n'
        f"cat > {handled}\n"
    )
    write_config(world, [exec_sub("flaky", "build.done", script, options={"retryDelay": 10})])
    DaemonProcess(world).start()
    stored = world.client().publish({"topic": "build.done", "payload": {"ok": True}})
    wait_until(lambda: settled(world) and handled.exists(), what="the third attempt")

    assert lines_of(attempts) == ["1", "2", "3"]
    assert json.loads(handled.read_text())["id"] == stored["id"]  # the event on stdin
    row = status(world)["flaky"]
    assert (row["delivered"], row["failures"], row["deadLettered"]) == (1, 0, 0)
    assert row["lastError"] == "exit 1: not yet"
    assert dead_letters(world) == []
    assert world.cli("dlq", "list").stdout == ""
    assert logged(world, FAILED) == []


def test_a_handler_that_always_fails_is_dead_lettered_reported_and_retried_from_the_dlq(
    world: World, tmp_path: Path
) -> None:
    calls, fixed = tmp_path / "calls", tmp_path / "fixed"
    script = (
        f'echo "$ELSABRO_TOPIC $ELSABRO_ATTEMPT" >> {calls}\n'
        f'[ -e {fixed} ] || {{ echo "not fixed yet" >&2; exit 3; }}\n'
    )
    write_config(
        world,
        [
            # `#` would match its own failure event: it must never be handed that one.
            exec_sub("fragile", "#", script, options={"maxRetries": 1, "retryDelay": 10}),
            append_sub("watcher", "event.#", "failures.jsonl"),
        ],
    )
    DaemonProcess(world).start()
    stored = world.client().publish({"topic": "deploy.started", "payload": {"v": 1}})
    wait_until(lambda: logged(world, FAILED) and settled(world), what="the failure event, handled")

    [failure] = logged(world, FAILED)
    [letter] = dead_letters(world)
    assert failure["payload"]["subscription"] == "fragile"
    assert failure["payload"]["eventId"] == stored["id"] and failure["causationId"] == stored["id"]
    assert failure["payload"]["deadLetterId"] == letter["id"]
    assert failure["payload"]["retryCount"] == 1
    assert [r["id"] for r in records(world.project / "failures.jsonl")] == [failure["id"]]
    assert lines_of(calls) == ["deploy.started 1", "deploy.started 2"], "fragile saw its own failure"

    listed = world.cli("dlq", "list").stdout.splitlines()
    assert len(listed) == 1
    assert letter["id"] in listed[0] and "fragile" in listed[0] and "deploy.started" in listed[0]
    assert "exit 3: not fixed yet" in listed[0]
    shown = json.loads(world.cli("dlq", "show", letter["id"]).stdout)
    assert set(shown) == {"id", "originalEvent", "error", "subscriber", "failedAt", "retryCount"}
    assert shown["originalEvent"] == stored
    assert shown["error"] == {"message": "exit 3: not fixed yet", "detail": "not fixed yet"}
    assert (shown["subscriber"], shown["retryCount"]) == ("fragile", 1)
    assert shown["failedAt"].endswith("Z") and shown["failedAt"] >= stored["timestamp"]

    still = world.cli("dlq", "retry", letter["id"], check=False)
    assert still.returncode == 1
    assert f"still failing: {letter['id']}: exit 3: not fixed yet" in still.stdout
    assert "retried 1, succeeded 0" in still.stdout
    [kept] = dead_letters(world)
    assert kept["id"] == letter["id"] and kept["retryCount"] == 2
    assert lines_of(calls)[-1] == "deploy.started 3"

    fixed.touch()
    retried = world.cli("dlq", "retry", letter["id"])
    assert "retried 1, succeeded 1" in retried.stdout
    assert lines_of(calls)[-1] == "deploy.started 4"
    assert dead_letters(world) == []
    assert world.cli("dlq", "list").stdout == ""


def test_a_hanging_handler_is_killed_whole_at_its_timeout_while_others_keep_flowing(
    world: World, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    script = f'sleep 60 &\necho "$$ $!" > {pids}/"$ELSABRO_EVENT_ID"\nwait\n'
    write_config(
        world,
        [
            exec_sub("hang", "job.run", script, options={"timeout": 300, "maxRetries": 0}),
            append_sub("fast", "job.run", "fast.jsonl"),
        ],
    )
    DaemonProcess(world).start()
    client = world.client()
    started = time.monotonic()
    stored = [client.publish({"topic": "job.run", "payload": {"i": i}}) for i in range(3)]
    wait_until(lambda: len(lines_of(world.project / "fast.jsonl")) == 3, what="the fast subscription")
    # Three events through `fast` before `hang` has timed out on its second one.
    assert len(dead_letters(world)) <= 1, "the fast subscription waited for the hanging one"
    assert [r["id"] for r in records(world.project / "fast.jsonl")] == [s["id"] for s in stored]

    first = stored[0]["id"]
    wait_until(lambda: dead_letters(world), what="the first event to time out")
    elapsed = time.monotonic() - started
    [letter] = dead_letters(world)[:1]
    assert letter["originalEvent"]["id"] == first
    assert letter["error"]["message"] == "timed out after 0.3 s; killed"
    assert 0.3 <= elapsed < 10
    shell, child = (int(p) for p in (pids / first).read_text().split())
    wait_until(lambda: not alive(shell) and not alive(child), timeout_s=5, what="the whole group to die")
    # And the subscription moved on to the next event.
    wait_until(lambda: (pids / stored[1]["id"]).exists(), what="the second event to start")


# -- durable cursors -----------------------------------------------------------------------


def test_a_durable_subscription_resumes_from_its_cursor_after_kill_9_and_sees_what_the_hook_spooled(
    world: World, tmp_path: Path
) -> None:
    opened = tmp_path / "gate-open"
    # `tool.gate` fails until the flag exists, then waits a minute before its retry: events
    # behind it are in the log but not handled when the daemon is killed.
    script = (
        f'if [ "$ELSABRO_TOPIC" = tool.gate ] && [ ! -e {opened} ]; then exit 1; fi\n'
        "cat >> keeper.jsonl && echo >> keeper.jsonl\n"
    )
    options = {"durable": True, "maxRetries": 1, "retryDelay": 60_000}
    write_config(
        world,
        [
            exec_sub("keeper", "tool.#", script, options=options),
            append_sub("ephemeral", "tool.#", "ephemeral.jsonl"),
        ],
    )
    keeper, ephemeral = world.project / "keeper.jsonl", world.project / "ephemeral.jsonl"
    cursors = world.project / ".elsabro" / "cursors.json"
    daemon = DaemonProcess(world).start()
    client = world.client()
    n = 5
    first = client.publish_batch([{"topic": "tool.one", "payload": {"i": i}} for i in range(n)])
    wait_until(lambda: len(lines_of(keeper)) == n, what="the first batch")
    # Checkpointed at least once past the first batch (every CHECKPOINT_S).
    wait_until(
        lambda: cursors.exists() and first[-1]["sequence"] in json.loads(cursors.read_text()).values(),
        timeout_s=5,
        what="a checkpoint past the first batch",
    )
    second = client.publish_batch(
        [
            *({"topic": "tool.two", "payload": {"i": i}} for i in range(n)),
            {"topic": "tool.gate"},
            *({"topic": "tool.three", "payload": {"i": i}} for i in range(2)),
        ]
    )
    wait_until(lambda: len(lines_of(ephemeral)) == 2 * n + 3, what="the second batch, non-durable")
    wait_until(lambda: status(world)["keeper"]["failures"] == 1, what="keeper to stop at the gate")
    assert len(lines_of(keeper)) == 2 * n
    daemon.kill()

    hook_input = json.loads((FIXTURES / "claude-code-2.1.197" / "PostToolUse.json").read_text())["stdin"]
    for _ in range(3):
        run_hook(world, hook_input)
    assert len(list((world.project / ".elsabro" / "spool").glob("*.json"))) == 3
    opened.touch()

    DaemonProcess(world).start()
    last = client.publish({"topic": "tool.after"})  # opens the project: the spool drains first
    wanted = [r["sequence"] for r in world.events() if matches("tool.#", r["topic"])]
    assert len(wanted) == 2 * n + 3 + 3 + 1
    wait_until(
        lambda: set(wanted) <= {r["sequence"] for r in records(keeper)} and settled(world),
        what="the durable subscription to catch up",
    )

    got = [r["sequence"] for r in records(keeper)]
    assert set(got) == set(wanted), "an event was never handled"
    # In log order within each life of the daemon: at most one step back, where it resumed.
    steps_back = [i for i in range(1, len(got)) if got[i] <= got[i - 1]]
    assert len(steps_back) <= 1
    parts = [got[: steps_back[0]], got[steps_back[0] :]] if steps_back else [got]
    assert all(part == sorted(set(part)) for part in parts)
    duplicates = len(got) - len(set(got))
    assert duplicates <= n, f"{duplicates} redelivered: more than the last checkpoint interval"
    assert all(got.count(r["sequence"]) == 1 for r in first), "resumed before its checkpoint"
    behind_the_gate = [r["sequence"] for r in second[n:]]
    assert all(got.count(sequence) == 1 for sequence in behind_the_gate)
    hook_records = [r for r in records(keeper) if r["topic"] == "tool.bash.completed"]
    assert [r["payload"] for r in hook_records] == [hook_input] * 3
    assert records(keeper)[-1]["id"] == last["id"]

    # The non-durable one starts at the head after the restart: nothing it had is delivered again.
    seen = [r["sequence"] for r in records(ephemeral) if r["topic"] != "tool.bash.completed"]
    assert seen == [r["sequence"] for r in [*first, *second]] + [last["sequence"]]


def test_a_non_durable_subscription_does_not_get_what_the_hook_spooled_while_the_daemon_was_down(
    world: World,
) -> None:
    write_config(world, [append_sub("ephemeral", "tool.#", "ephemeral.jsonl")])
    ephemeral = world.project / "ephemeral.jsonl"
    daemon = DaemonProcess(world).start()
    before = world.client().publish({"topic": "tool.before"})
    wait_until(lambda: len(lines_of(ephemeral)) == 1, what="delivery before the crash")
    daemon.kill()

    hook_input = json.loads((FIXTURES / "claude-code-2.1.197" / "PostToolUse.json").read_text())["stdin"]
    for _ in range(2):
        run_hook(world, hook_input)
    DaemonProcess(world).start()
    after = world.client().publish({"topic": "tool.after"})  # opens the project: the spool drains first
    assert [r["topic"] for r in world.events()] == [
        "tool.before",
        "tool.bash.completed",
        "tool.bash.completed",
        "tool.after",
    ]
    wait_until(lambda: settled(world), what="the subscription to settle")
    assert [r["id"] for r in records(ephemeral)] == [before["id"], after["id"]], (
        "a non-durable subscription got events published while it was down"
    )


# -- manual acks ---------------------------------------------------------------------------


def test_manual_ack_holds_the_next_event_and_nack_or_silence_redelivers(world: World, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    script = f'echo "$ELSABRO_EVENT_ID $ELSABRO_ATTEMPT" >> {calls}\n'
    options = {"ack": "manual", "ackWait": 2000, "maxRetries": 3, "retryDelay": 10}
    write_config(world, [exec_sub("reviewer", "review.requested", script, options=options)])
    DaemonProcess(world).start()
    client = world.client()
    e1, e2 = (client.publish({"topic": "review.requested", "payload": {"i": i}})["id"] for i in range(2))

    wait_until(lambda: lines_of(calls), what="the first delivery")
    time.sleep(0.3)  # the second event must not arrive while the first waits for its ack
    assert lines_of(calls) == [f"{e1} 1"]
    retry_cli(world, "ack", "reviewer", e1, what="the ack of the first event")
    wait_until(lambda: f"{e2} 1" in lines_of(calls), what="the second event after the ack")

    retry_cli(world, "nack", "reviewer", e2, what="the nack of the second event")
    wait_until(lambda: f"{e2} 2" in lines_of(calls), what="redelivery after the nack")
    redelivered = time.monotonic()
    wait_until(lambda: f"{e2} 3" in lines_of(calls), timeout_s=10, what="redelivery after ackWait")
    assert time.monotonic() - redelivered >= 1.5, "redelivered before ackWait ran out"
    retry_cli(world, "ack", "reviewer", e2, what="the ack of the third attempt")
    wait_until(lambda: settled(world), what="the subscription to settle")

    assert lines_of(calls) == [f"{e1} 1", f"{e2} 1", f"{e2} 2", f"{e2} 3"]
    row = status(world)["reviewer"]
    assert (row["delivered"], row["deadLettered"]) == (2, 0)
    assert row["lastError"] == "no ack within 2 s"

    late = world.cli("ack", "reviewer", e2, check=False)
    assert late.returncode == 1
    assert late.stderr.strip() == f"elsabro: reviewer is not waiting for an ack of {e2}"
    unknown = world.cli("ack", "nobody", e2, check=False)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert "no subscription named 'nobody'" in unknown.stderr


# -- queue groups ------------------------------------------------------------------------


def test_a_queue_group_hands_each_event_to_exactly_one_member(world: World) -> None:
    write_config(
        world,
        [
            append_sub("w1", "work.item", "w1.jsonl", options={"queue": "workers"}),
            append_sub("w2", "work.item", "w2.jsonl", options={"queue": "workers"}),
        ],
    )
    DaemonProcess(world).start()
    world.client().publish_batch([{"topic": "work.item", "payload": {"i": i}} for i in range(40)])
    wait_until(lambda: settled(world), what="the queue group to handle every event")

    one = [r["payload"]["i"] for r in records(world.project / "w1.jsonl")]
    two = [r["payload"]["i"] for r in records(world.project / "w2.jsonl")]
    assert sorted(one + two) == list(range(40)), "an event was lost or handled twice"
    assert one and two, "one member did all the work"
    assert one == sorted(one) and two == sorted(two)  # order holds per member
    rows = status(world)
    assert rows["w1"]["queue"] == rows["w2"]["queue"] == "workers"


# -- configuration changes ----------------------------------------------------------------


def test_hot_reload_starts_a_new_subscription_and_keeps_the_cursor_of_unchanged_ones(world: World) -> None:
    first = append_sub("first", "note.added", "first.jsonl")
    write_config(world, [first])
    DaemonProcess(world).start()
    client = world.client()
    for i in range(3):
        client.publish({"topic": "note.added", "payload": {"i": i}})
    wait_until(lambda: len(lines_of(world.project / "first.jsonl")) == 3, what="the first subscription")

    write_config(world, [first, append_sub("second", "note.added", "second.jsonl")])
    wait_until(lambda: "second" in status(world), timeout_s=5, what="the reload to start `second`")
    for i in range(3, 5):
        client.publish({"topic": "note.added", "payload": {"i": i}})
    wait_until(
        lambda: len(lines_of(world.project / "second.jsonl")) == 2 and settled(world),
        timeout_s=5,
        what="new events to reach `second`",
    )

    assert [r["payload"]["i"] for r in records(world.project / "first.jsonl")] == [0, 1, 2, 3, 4]
    assert [r["payload"]["i"] for r in records(world.project / "second.jsonl")] == [3, 4]
    assert status(world)["first"]["delivered"] == 5, "the unchanged consumer was restarted"


def test_an_invalid_config_edit_keeps_the_old_subscriptions_and_is_reported(world: World) -> None:
    good = append_sub("keep", "note.added", "kept.jsonl")
    write_config(world, [good])
    DaemonProcess(world).start()
    client = world.client()
    kept = world.project / "kept.jsonl"
    client.publish({"topic": "note.added", "payload": {"i": 0}})
    wait_until(lambda: len(lines_of(kept)) == 1, what="delivery with the good config")

    def invalid_reports() -> list[list[str]]:
        return [r["payload"]["errors"] for r in logged(world, "config.invalid")]

    config_path(world).write_text('{"subscriptions": [')
    wait_until(
        lambda: any("invalid JSON" in e for errors in invalid_reports() for e in errors),
        timeout_s=5,
        what="config.invalid for bad JSON",
    )
    client.publish({"topic": "note.added", "payload": {"i": 1}})
    wait_until(lambda: len(lines_of(kept)) == 2, what="delivery after the bad JSON")

    broken = {**good, "handler": {"type": "append", "path": "other.jsonl"}, "options": {"maxRetries": "many"}}
    write_config(world, [broken])
    wait_until(
        lambda: any(
            e.startswith("subscriptions[0].options.maxRetries: ")
            for errors in invalid_reports()
            for e in errors
        ),
        timeout_s=5,
        what="config.invalid naming subscriptions[0].options.maxRetries",
    )
    client.publish({"topic": "note.added", "payload": {"i": 2}})
    wait_until(lambda: len(lines_of(kept)) == 3 and settled(world), what="delivery after the schema error")

    assert [r["payload"]["i"] for r in records(kept)] == [0, 1, 2]
    assert not (world.project / "other.jsonl").exists()
    assert list(status(world)) == ["keep"]
    report = logged(world, "config.invalid")[-1]
    assert report["payload"]["file"] == str(config_path(world))


# -- the CLI -------------------------------------------------------------------------------


def wait_process(world: World, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "elsabro", "wait", *args],
        env=world.env,
        cwd=world.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publish_until_it_exits(
    world: World, process: subprocess.Popen[str], batch: list[dict[str, Any]], timeout_s: float = 10
) -> tuple[int, str, str]:
    """Publish `batch` again and again until the waiting process has seen one and exited."""
    client = world.client()
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "elsabro wait did not exit"
            client.publish_batch(batch)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
        out, err = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_wait_prints_the_first_matching_event_and_honours_filter_and_timeout(
    world: World, daemon: DaemonProcess
) -> None:
    code, out, err = publish_until_it_exits(
        world, wait_process(world, "test.ping", "--timeout", "5"), [{"topic": "test.ping", "payload": 1}]
    )
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert json.loads(line)["topic"] == "test.ping" and json.loads(line)["payload"] == 1

    # Both arrive together, the non-matching one first: only the filter lets the second end it.
    pair = [{"topic": "job.x", "payload": {"ok": False}}, {"topic": "job.y", "payload": {"ok": True}}]
    code, out, err = publish_until_it_exits(
        world, wait_process(world, "job.#", "--filter", "payload.ok", "--timeout", "5"), pair
    )
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert json.loads(line)["topic"] == "job.y"

    started = time.monotonic()
    result = world.cli("wait", "never.happens", "--timeout", "0.5", check=False)
    assert time.monotonic() - started < 5
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == "elsabro: no matching event within 0.5 s"


def test_subscriptions_test_runs_the_handler_once_and_list_shows_the_state(
    world: World, tmp_path: Path
) -> None:
    write_config(
        world,
        [
            append_sub("tester", "probe.only", "tested.jsonl"),
            exec_sub("broken", "probe.never", "echo boom >&2; exit 4"),
            exec_sub("stuck", "work.item", "exit 5", options={"maxRetries": 1, "retryDelay": 20_000}),
        ],
    )
    DaemonProcess(world).start()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"topic": "probe.only", "payload": {"hello": "world"}}))

    ok = world.cli("subscriptions", "test", "tester", "--event", str(event))
    assert ok.stdout.strip() == "ok"
    [written] = records(world.project / "tested.jsonl")
    assert written["payload"] == {"hello": "world"} and written["id"].startswith("evt_")
    failed = world.cli("subscriptions", "test", "broken", "--event", str(event), check=False)
    assert failed.returncode == 1
    assert failed.stdout.strip() == "failed: exit 4: boom"
    assert logged(world, "probe.only") == []  # a test is not an event in the log

    client = world.client()
    client.publish({"topic": "work.item"})
    stored = client.publish({"topic": "other.thing"})
    wait_until(lambda: status(world)["stuck"]["failures"] == 1, what="the first failed attempt")
    wait_until(lambda: status(world)["tester"]["lag"] == 0, what="tester to reach the head")

    rows = {r["name"]: r for r in json.loads(world.cli("subscriptions", "list", "--json").stdout)}
    assert set(rows) == {"tester", "broken", "stuck"}
    head = stored["sequence"]
    assert rows["tester"]["cursor"] == head and rows["tester"]["lag"] == 0
    assert (rows["tester"]["failures"], rows["tester"]["stalled"]) == (0, False)
    stuck = rows["stuck"]
    assert (stuck["cursor"], stuck["lag"], stuck["inFlight"]) == (head - 2, 2, head - 1)
    assert (stuck["failures"], stuck["stalled"], stuck["lastError"]) == (1, True, "exit 5")
    human = world.cli("subscriptions", "list").stdout
    [stuck_line] = [line for line in human.splitlines() if line.startswith("stuck ")]
    assert stuck_line.endswith("stalled (exit 5)")


def test_config_check_names_each_mistake_by_its_json_path(world: World) -> None:
    def check(document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        config_path(world).parent.mkdir(exist_ok=True)
        config_path(world).write_text(json.dumps(document))
        return world.cli("config", "check", check=False)

    ok = append_sub("ok", "a.b", "x.jsonl")
    bad_fields = check(
        {
            "subscriptions": [
                ok,
                {"name": "no-argv", "topic": "a.b", "handler": {"type": "exec", "argv": []}},
                {**ok, "name": "bad-options", "options": {"maxRetries": "many", "ack": "sometimes"}},
            ]
        }
    )
    assert bad_fields.returncode == 1 and bad_fields.stdout == ""
    lines = bad_fields.stderr.splitlines()
    assert all(line.startswith("elsabro: ") for line in lines)
    paths = sorted(line.removeprefix("elsabro: ").split(": ")[0] for line in lines)
    assert paths == [
        "subscriptions[1].handler.argv",
        "subscriptions[2].options.ack",
        "subscriptions[2].options.maxRetries",
    ]

    duplicate = check({"subscriptions": [ok, {**ok, "topic": "c.d"}]})
    assert duplicate.returncode == 1
    assert "subscription names must be unique: ok" in duplicate.stderr

    loop = check(
        {
            "subscriptions": [
                {"name": "ping", "topic": "p.one", "handler": {"type": "publish", "topic": "p.two"}},
                {"name": "pong", "pattern": "p.*", "handler": {"type": "publish", "topic": "p.one"}},
            ]
        }
    )
    assert loop.returncode == 1
    assert "republishes into itself" in loop.stderr

    valid = check({"subscriptions": [ok, exec_sub("runner", "a.#", "true")]})
    assert (valid.returncode, valid.stderr) == (0, "")
    assert valid.stdout.strip() == "ok: 2 subscriptions, 0 webhook endpoints"

    schema = json.loads(world.cli("config", "schema").stdout)
    assert schema["type"] == "object"
    assert {"subscriptions", "events"} <= set(schema["properties"])


def test_config_check_reports_a_duplicate_name_alongside_field_mistakes(world: World) -> None:
    """`load` promises every mistake at once: a duplicate must not hide behind a field error."""
    config_path(world).parent.mkdir(exist_ok=True)
    ok = append_sub("same", "a.b", "x.jsonl")
    config_path(world).write_text(
        json.dumps(
            {
                "subscriptions": [
                    ok,
                    {**ok, "topic": "c.d"},
                    {"name": "no-argv", "topic": "a.b", "handler": {"type": "exec", "argv": []}},
                ]
            }
        )
    )
    result = world.cli("config", "check", check=False)
    assert result.returncode == 1
    assert "subscriptions[2].handler.argv" in result.stderr
    assert "subscription names must be unique: same" in result.stderr


def test_an_internal_failure_leaves_the_subscription_visibly_stalled_not_skipped(
    world: World, daemon: DaemonProcess
) -> None:
    """When parking an event fails (here the dead-letter file cannot be written), the cursor
    must not move past it as if it were handled: the subscription shows stalled instead."""
    failing = {
        "name": "parks",
        "topic": "p.x",
        "options": {"maxRetries": 0},
        "handler": {"type": "exec", "argv": ["sh", "-c", "exit 1"]},
    }
    configure(world, {"subscriptions": [failing]})
    (world.project / ".elsabro" / "deadletters.jsonl").mkdir()  # not a file: every append fails
    world.client().publish({"topic": "p.x"})

    def row() -> dict[str, Any]:
        [only] = world.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
        return only

    wait_until(lambda: (row()["lastError"] or "").startswith("internal error"), what="the internal error")
    assert row()["stalled"] is True and row()["cursor"] == 0 and row()["inFlight"] == 1
