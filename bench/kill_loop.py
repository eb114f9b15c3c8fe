"""kill -9 under load, again and again: no acknowledged event is lost or stored twice, the
chain stays intact, and durable subscriptions resume where their checkpoint says.

    .venv/bin/python bench/kill_loop.py [--iterations 100] [--json OUT] [--seed N]

Everything runs in one throwaway world under /tmp (its own HOME, socket and project: never
the real HOME or a daemon the user runs), removed at the end. The project's config, in
place before the daemon first hears of the project, has two durable subscriptions:

  kill-append  pattern `kill.#`    append handler -> <project>/sub-append.jsonl (every event)
  kill-exec    topic `kill.exec`   exec handler, `sh -c` appending `date +%s%N` and the event
                                   id to <project>/sub-exec.txt (one request in 20)

Each iteration, against a running daemon:

 1. PUBLISHERS processes x THREADS threads publish single events and batches of 2-8,
    back to back; every event id the daemon acknowledged (a 2xx answer) is recorded.
 2. Once every publisher has had an answer, a random delay (0 to --max-delay-s), then
    kill -9 under that load. At once: the append file's size and `.elsabro/cursors.json`.
 3. Restart the daemon, open the project, wait (with a deadline) until both subscriptions
    have handled everything: lag 0, nothing in flight.
 4. Check, over the whole log so far:
    - every acknowledged id is stored, and no id is stored twice
    - sequences run 1..N without a gap, and `elsabro.audit.verify` says intact
    - batches are whole (a stored batch record has all its siblings)
    - every stored event a subscription selects was handled at least once (none skipped)
    - redeliveries stay within the documented bound ("after a crash it may redeliver the
      events of the last second": the cursor is checkpointed every CHECKPOINT_S): the append
      subscription resumes at exactly the persisted cursor + 1, so it redelivers only what
      it handled after its last checkpoint; and the oldest of those handlings happened at
      most CHECKPOINT_S + SLACK_S before the kill. Handling times come from a thread that
      polls the append file's size every WATCH_POLL_S: a line's time is the first poll that
      saw it (up to WATCH_POLL_S late, within the slack).
      Redeliveries are counted per kill for both subscriptions and reported.

Prints the summary as JSON on stdout (and into --json OUT), then one human line on
stderr; exits 1 on any violation. `run()` is the same loop for tests.

A publisher worker is this file run as `kill_loop.py publish PROJECT THREADS`.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Daemon, Worker, World, report, wait_until
from elsabro.core.errors import Busy, DaemonError, ElsabroError
from elsabro.core.settings import Settings
from elsabro.daemon.client import Client
from elsabro.delivery.dispatch import CHECKPOINT_S
from elsabro.store.audit import verify
from elsabro.store.segments import list_segments

PUBLISHERS = 3
THREADS = 2
APPEND_SUB = "kill-append"
EXEC_SUB = "kill-exec"
APPEND_FILE = "sub-append.jsonl"
EXEC_FILE = "sub-exec.txt"
EXEC_SCRIPT = 'echo "$(date +%s%N) $ELSABRO_EVENT_ID" >> "$1"'
# Beyond the checkpoint interval, what a loaded machine may add before a checkpoint lands.
SLACK_S = 1.0
WATCH_POLL_S = 0.005
CATCH_UP_S = 300.0  # for both subscriptions to handle everything after a restart
ANSWER_S = 60.0  # for a publisher to answer a command
ROUND_LIMIT_S = 120.0  # a publisher gives up a round this long after it began (the kill never came)
MAX_MESSAGES = 20  # violations kept word for word in the summary


# -- the publisher worker (its own process) -------------------------------------------------


def _publish_until_gone(
    client: Client, acked: list[str], errors: Counter[str], lock: threading.Lock, started: threading.Event
) -> None:
    """Publish until the daemon goes away; every acknowledged id goes into `acked`."""
    rng = random.Random()
    give_up = time.monotonic() + ROUND_LIMIT_S
    n = 0
    while time.monotonic() < give_up:
        try:
            if n % 10 == 0:
                size = rng.randint(2, 8)
                batch = [{"topic": "kill.batch", "payload": {"size": size, "k": k}} for k in range(size)]
                ids = [record["id"] for record in client.publish_batch(batch)]
            else:
                topic = "kill.exec" if n % 20 == 5 else "kill.one"
                ids = [client.publish({"topic": topic, "payload": {"n": n}})["id"]]
        except Busy:
            with lock:
                errors["busy"] += 1
            time.sleep(0.005)
            continue
        except (DaemonError, OSError, ValueError):
            return  # killed: this request's events are unacknowledged, stored or not
        except ElsabroError as exc:
            with lock:
                errors[f"unexpected {type(exc).__name__}: {exc}"] += 1
            return
        with lock:
            acked.extend(ids)
        started.set()
        n += 1
    with lock:
        errors["round limit reached without a kill"] += 1


def _round(settings: Settings, project: str, threads: int) -> dict[str, Any]:
    acked: list[str] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    started = threading.Event()
    pool = [
        threading.Thread(
            target=_publish_until_gone,
            args=(Client(settings, project), acked, errors, lock, started),
            daemon=True,
        )
        for _ in range(threads)
    ]
    for thread in pool:
        thread.start()
    print("started" if started.wait(ANSWER_S) else "no-ack", flush=True)
    for thread in pool:
        thread.join()
    return {"acked": acked, "errors": dict(errors)}


def publisher(project: str, threads: int) -> int:
    """Prints `ready`; each `go` line starts a round: `started` at its first ack, then a JSON result."""
    settings = Settings.from_env()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            return 0
        print(json.dumps(_round(settings, project, threads)), flush=True)
    return 0


class Publishers:
    """The publisher processes, driven from here."""

    def __init__(self, world: World, project: Path, count: int, threads: int) -> None:
        self.workers: list[Worker] = []
        try:
            for n in range(count):
                argv = [sys.executable, __file__, "publish", str(project), str(threads)]
                self.workers.append(Worker(argv, world.env, f"publisher {n}"))
            for worker in self.workers:
                _expect(worker.read(ANSWER_S), "ready")
        except BaseException:
            self.close()
            raise

    def go(self) -> None:
        """Start a round and return once every publisher has had an event acknowledged."""
        for worker in self.workers:
            worker.send("go")
        for worker in self.workers:
            _expect(worker.read(ANSWER_S), "started")

    def results(self) -> tuple[list[str], Counter[str]]:
        acked: list[str] = []
        errors: Counter[str] = Counter()
        for worker in self.workers:
            answer = json.loads(worker.read(ANSWER_S))
            acked += answer["acked"]
            errors.update(answer["errors"])
        return acked, errors

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def _expect(line: str, word: str) -> None:
    if line != word:
        raise RuntimeError(f"a publisher said {line!r}, expected {word!r}")


# -- what the loop keeps ------------------------------------------------------------------


@dataclass
class Kill:
    """The moment of one kill -9, as seen right after the process was gone."""

    at: float  # wall time just before SIGKILL
    run_offset: int  # bytes of the append file when the killed run began (at the kill before)
    append_size: int  # bytes of the append file then
    cursors: dict[str, int]  # as persisted in cursors.json then


@dataclass
class Tally:
    """The whole run so far."""

    iterations: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    log_duplicates: int = 0
    gap_failures: int = 0
    verify_failures: int = 0
    torn_batches: int = 0
    skipped: int = 0
    bound_violations: int = 0
    quarantine_files: int = 0
    append_redeliveries: list[int] = field(default_factory=list)
    exec_redeliveries: list[int] = field(default_factory=list)
    unpersisted_ages_s: list[float] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    publisher_errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0

    def violation(self, iteration: int, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_MESSAGES:
            self.violations.append(f"iteration {iteration}: {message}")


class AppendWatch:
    """Polls a file's size from a thread: when each byte of it first became readable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: list[float] = []
        self.sizes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(WATCH_POLL_S):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                continue
            if not self.sizes or size > self.sizes[-1]:
                self.times.append(time.time())
                self.sizes.append(size)

    def first_seen(self, end: int) -> float:
        """The wall time of the first poll that saw the file at least `end` bytes long."""
        index = bisect.bisect_left(self.sizes, end)
        if index == len(self.sizes):
            raise RuntimeError(f"the watch never saw {self.path.name} reach {end} bytes")
        return self.times[index]


class Loop:
    """One world, one daemon (restarted after each kill), the publishers, and the checks."""

    def __init__(self, world: World, publishers: int, threads: int, max_delay_s: float, seed: int) -> None:
        self.world = world
        self.project = world.project("kill")
        self.dot = self.project / ".elsabro"
        self.publisher_count, self.threads = publishers, threads
        self.max_delay_s = max_delay_s
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.acked: set[str] = set()
        self.exec_duplicates = 0
        self.daemon: Daemon | None = None
        self.run_offset = 0
        self.watch = AppendWatch(self.project / APPEND_FILE)

    def configure(self) -> None:
        """The config, in place before the daemon first hears of the project."""
        exec_argv = ["sh", "-c", EXEC_SCRIPT, "sh", str(self.project / EXEC_FILE)]
        config = {
            "subscriptions": [
                {
                    "name": APPEND_SUB,
                    "pattern": "kill.#",
                    "handler": {"type": "append", "path": APPEND_FILE},
                    "options": {"durable": True},
                },
                {
                    "name": EXEC_SUB,
                    "topic": "kill.exec",
                    "handler": {"type": "exec", "argv": exec_argv},
                    "options": {"durable": True},
                },
            ]
        }
        self.dot.mkdir(mode=0o700, exist_ok=True)
        (self.dot / "config.json").write_text(json.dumps(config, indent=1))
        self.world.trust(self.project)

    def start_daemon(self) -> None:
        self.daemon = Daemon(self.world).start()
        self.client().call_json("GET", "/v1/subscriptions")  # opens the project: recovery, then resume

    def client(self) -> Client:
        return self.world.client(self.project)

    # -- one iteration --------------------------------------------------------------------

    def iteration(self, number: int, publishers: Publishers) -> None:
        publishers.go()
        delay_s = self.rng.uniform(0.0, self.max_delay_s)
        time.sleep(delay_s)  # the random point of the kill; readiness is never waited with sleeps
        kill = self.kill()
        acked, errors = publishers.results()
        self.tally.delays_s.append(delay_s)
        self.tally.publisher_errors.update(errors)
        for message in errors:
            if message.startswith(("unexpected", "round limit")):
                self.tally.violation(number, f"publisher: {message}")
        self.acked.update(acked)
        self.tally.acknowledged += len(acked)
        self.start_daemon()
        wait_until(self.caught_up, CATCH_UP_S, "both subscriptions to handle every stored event")
        self.check(number, kill)
        self.tally.iterations += 1

    def kill(self) -> Kill:
        assert self.daemon is not None
        at = time.time()
        self.daemon.kill()
        try:
            cursors = {str(k): int(v) for k, v in json.loads((self.dot / "cursors.json").read_text()).items()}
        except FileNotFoundError:
            cursors = {}
        append = self.project / APPEND_FILE
        size = append.stat().st_size if append.exists() else 0
        kill = Kill(at, self.run_offset, size, cursors)
        self.run_offset = size
        return kill

    def caught_up(self) -> bool:
        rows = self.client().call_json("GET", "/v1/subscriptions")["subscriptions"]
        return len(rows) == 2 and all(row["lag"] == 0 and row["inFlight"] is None for row in rows)

    # -- the checks -------------------------------------------------------------------------

    def check(self, number: int, kill: Kill) -> None:
        records = self.records()
        self.check_log(number, records)
        self.check_append(number, kill, records)
        self.check_exec(number, records)

    def records(self) -> list[dict[str, Any]]:
        records = []
        for _, path in list_segments(self.dot / "events"):
            records.extend(json.loads(line) for line in path.read_bytes().splitlines())
        return records

    def check_log(self, number: int, records: list[dict[str, Any]]) -> None:
        tally = self.tally
        ids = [record["id"] for record in records]
        stored = set(ids)
        tally.stored = len(records)
        if (duplicates := len(ids) - len(stored)) != tally.log_duplicates:
            tally.violation(number, f"{duplicates - tally.log_duplicates} more ids stored twice")
            tally.log_duplicates = duplicates
        if lost := self.acked - stored:
            tally.violation(number, f"{len(lost)} acknowledged events not in the log, e.g. {min(lost)}")
            tally.lost = len(lost)
        if [record["sequence"] for record in records] != list(range(1, len(records) + 1)):
            tally.gap_failures += 1
            tally.violation(number, "sequences are not 1..N without a gap")
        report = verify(self.dot / "events")
        if not report.intact or report.records != len(records):
            tally.verify_failures += 1
            tally.violation(number, f"verify: {report.finding}, {report.records} of {len(records)} records")
        batches: Counter[int] = Counter()
        sizes: dict[int, int] = {}
        for record in records:
            if record["topic"] == "kill.batch":
                batches[record["batchLast"]] += 1
                sizes[record["batchLast"]] = record["payload"]["size"]
        torn = sum(1 for last, count in batches.items() if count != sizes[last])
        if torn != tally.torn_batches:
            tally.violation(number, f"{torn - tally.torn_batches} batches stored in part")
            tally.torn_batches = torn
        tally.quarantine_files = len(list((self.dot / "events").glob("*quarantine*")))

    def check_append(self, number: int, kill: Kill, records: list[dict[str, Any]]) -> None:
        """Nothing skipped; resumed at the persisted cursor + 1; redeliveries within the bound."""
        data = (self.project / APPEND_FILE).read_bytes()
        if data and not data.endswith(b"\n"):
            self.tally.violation(number, "the append file ends in a torn line")
        before = [json.loads(line) for line in data[: kill.append_size].splitlines()]
        after = [json.loads(line) for line in data[kill.append_size :].splitlines()]
        handled = {line["id"] for line in before} | {line["id"] for line in after}
        selected = [r for r in records if r["topic"].startswith("kill.")]
        if missing := [r["sequence"] for r in selected if r["id"] not in handled]:
            self.tally.skipped += len(missing)
            self.tally.violation(number, f"{APPEND_SUB} never handled sequences {missing[:10]}")
        cursor = kill.cursors.get(f"sub:{APPEND_SUB}", 0)
        handled_at_kill = max((line["sequence"] for line in before), default=0)
        redelivered = handled_at_kill - cursor
        self.tally.append_redeliveries.append(redelivered)
        if redelivered < 0:
            self.tally.violation(number, f"persisted cursor {cursor} is past the handler ({handled_at_kill})")
        resume = next((r["sequence"] for r in selected if r["sequence"] > cursor), None)
        if after and after[0]["sequence"] != resume:
            self.tally.bound_violations += 1
            self.tally.violation(
                number, f"{APPEND_SUB} resumed at {after[0]['sequence']}, not at {resume} (cursor {cursor})"
            )
        if redelivered > 0:
            self.check_window(number, kill, data, cursor)

    def check_window(self, number: int, kill: Kill, data: bytes, cursor: int) -> None:
        """The oldest handling the checkpoint missed was at most CHECKPOINT_S + SLACK_S before the kill."""
        end = kill.run_offset
        for line in data[kill.run_offset : kill.append_size].splitlines(keepends=True):
            end += len(line)
            if json.loads(line)["sequence"] > cursor:  # the first handling past the checkpoint
                age = kill.at - self.watch.first_seen(end)
                self.tally.unpersisted_ages_s.append(age)
                if age > CHECKPOINT_S + SLACK_S:
                    self.tally.bound_violations += 1
                    self.tally.violation(
                        number, f"an event handled {age:.2f} s before the kill was redelivered"
                    )
                return

    def check_exec(self, number: int, records: list[dict[str, Any]]) -> None:
        path = self.project / EXEC_FILE
        lines = path.read_text().split("\n")[:-1] if path.exists() else []
        ids = [line.split()[1] for line in lines]
        handled = set(ids)
        selected = [r for r in records if r["topic"] == "kill.exec"]
        if missing := [r["sequence"] for r in selected if r["id"] not in handled]:
            self.tally.skipped += len(missing)
            self.tally.violation(number, f"{EXEC_SUB} never handled sequences {missing[:10]}")
        duplicates = len(ids) - len(handled)
        self.tally.exec_redeliveries.append(duplicates - self.exec_duplicates)
        self.exec_duplicates = duplicates


def summary(tally: Tally, elapsed_s: float, seed: int, error: str | None) -> dict[str, Any]:
    redeliveries = [a + e for a, e in zip(tally.append_redeliveries, tally.exec_redeliveries, strict=False)]
    result = {
        "iterations": tally.iterations,
        "events_acknowledged": tally.acknowledged,
        "events_stored": tally.stored,
        "lost": tally.lost,
        "duplicated_in_log": tally.log_duplicates,
        "gap_failures": tally.gap_failures,
        "verify_failures": tally.verify_failures,
        "torn_batches": tally.torn_batches,
        "skipped_by_subscriptions": tally.skipped,
        "redelivery_bound_violations": tally.bound_violations,
        "max_subscription_redeliveries_after_a_kill": max(redeliveries, default=0),
        "max_append_redeliveries_after_a_kill": max(tally.append_redeliveries, default=0),
        "max_exec_redeliveries_after_a_kill": max(tally.exec_redeliveries, default=0),
        "total_subscription_redeliveries": sum(redeliveries),
        "kills_with_redeliveries": sum(1 for n in redeliveries if n),
        "max_age_of_a_redelivered_handling_s": round(max(tally.unpersisted_ages_s, default=0.0), 3),
        "redelivery_age_bound_s": CHECKPOINT_S + SLACK_S,
        "torn_tail_quarantine_files": tally.quarantine_files,
        "kill_delay_s": [round(min(tally.delays_s, default=0), 3), round(max(tally.delays_s, default=0), 3)],
        "publisher_errors": dict(tally.publisher_errors),
        "violations": tally.violation_count + (1 if error else 0),
        "violation_messages": tally.violations,
        "error": error,
        "seed": seed,
        "total_time_s": round(elapsed_s, 1),
    }
    result["passed"] = result["violations"] == 0 and tally.iterations > 0
    return result


def run(
    iterations: int = 100,
    *,
    publishers: int = PUBLISHERS,
    threads: int = THREADS,
    max_delay_s: float = 2.0,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole loop in a throwaway world; the summary (`passed` is False on any violation)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    started = time.perf_counter()
    world = World("kill")
    loop = Loop(world, publishers, threads, max_delay_s, seed)
    error: str | None = None
    pool: Publishers | None = None
    try:
        loop.configure()
        loop.watch.start()
        loop.start_daemon()
        pool = Publishers(world, loop.project, publishers, threads)
        for number in range(1, iterations + 1):
            loop.iteration(number, pool)
            if progress is not None:
                tally = loop.tally
                progress(
                    f"{number}/{iterations}: {tally.acknowledged} acked, {tally.stored} stored, "
                    f"redelivered {tally.append_redeliveries[-1]}+{tally.exec_redeliveries[-1]}, "
                    f"violations {tally.violation_count}"
                )
    except (TimeoutError, RuntimeError, OSError, ValueError, ElsabroError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        loop.watch.stop()
        if pool is not None:
            pool.close()
        if loop.daemon is not None:
            with contextlib.suppress(Exception):
                loop.daemon.stop()
        world.remove()
    return summary(loop.tally, time.perf_counter() - started, seed, error)


def human(result: dict[str, Any]) -> str:
    return (
        f"kill_loop {'PASS' if result['passed'] else 'FAIL'}: {result['iterations']} kills, "
        f"{result['events_acknowledged']} events acknowledged, lost {result['lost']}, "
        f"duplicated in log {result['duplicated_in_log']}, verify failures {result['verify_failures']}, "
        f"max subscription redeliveries after a kill {result['max_subscription_redeliveries_after_a_kill']} "
        f"(handled at most {result['max_age_of_a_redelivered_handling_s']} s before the kill), "
        f"violations {result['violations']}, {result['total_time_s']} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--publishers", type=int, default=PUBLISHERS, help="publisher processes")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per publisher process")
    parser.add_argument("--max-delay-s", type=float, default=2.0, help="the kill comes 0 to this many s in")
    parser.add_argument("--seed", type=int, help="for the kill delays (printed in the summary)")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like an error would: the daemon is stopped and the world removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def progress(message: str) -> None:
        print(f"[kill_loop {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    result = run(
        args.iterations,
        publishers=args.publishers,
        threads=args.threads,
        max_delay_s=args.max_delay_s,
        seed=args.seed,
        progress=progress,
    )
    return report(result, args.json, human)


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        sys.exit(publisher(sys.argv[2], int(sys.argv[3])))
    sys.exit(main())
