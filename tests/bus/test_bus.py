"""The EventBus API: one behaviour suite, run against both modes.

`client` talks to a real daemon over its socket; `embedded` runs the bus in the test's
own process on a memory store. Whatever a test asserts must hold in both.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from elsabro import BadRequest, EventBus, EventTimeout, StoredEvent, UsageError
from elsabro.core.clock import now_iso
from support import DaemonProcess, World, run, until

MODES = ["client", "embedded"]
DEADLINE_S = 20.0


@pytest.fixture(params=MODES)
def open_bus(request: pytest.FixtureRequest, world: World) -> Iterator[Callable[[], Any]]:
    """`async with open_bus() as bus`: a bus of the mode under test, on the world's project."""
    if request.param == "client":
        DaemonProcess(world).start()

    @asynccontextmanager
    async def opened() -> AsyncIterator[EventBus]:
        if request.param == "client":
            bus = EventBus(world.project, settings=world.settings, start_daemon=False)
        else:
            bus = EventBus.embedded("memory")
        async with bus:
            yield bus

    yield opened


class Recorder:
    """A handler that keeps what it got (and optionally fails the first `fail` attempts)."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[StoredEvent] = []
        self.calls = 0
        self.fail = fail

    async def __call__(self, event: StoredEvent) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError(f"failure {self.calls}")
        self.events.append(event)

    @property
    def payloads(self) -> list[Any]:
        return [event.payload for event in self.events]


# -- publishing and reading back ----------------------------------------------------------


def test_publish_returns_the_stored_event(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            cause = await bus.publish("agent.started", {"n": 1})
            stored = await bus.publish(
                "agent.completed",
                {"n": 2},
                correlation_id="session-1",
                causation_id=cause.id,
                metadata={"k": "v"},
                source="my-tool",
            )
            typed = await bus.publish("x.y", type="Custom")
            assert (cause.sequence, stored.sequence, typed.sequence) == (1, 2, 3)
            assert stored.type == "AgentCompleted" and typed.type == "Custom"
            assert (stored.correlation_id, stored.causation_id) == ("session-1", cause.id)
            assert stored.metadata == {"k": "v"} and stored.source == "my-tool"
            assert [e.id for e in await bus.history()] == [cause.id, stored.id, typed.id]

    run(scenario())


def test_publish_batch_is_atomic(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            stored = await bus.publish_batch(
                [{"topic": "a.one", "payload": 1}, {"topic": "a.two", "correlation_id": "c"}]
            )
            assert [e.sequence for e in stored] == [1, 2] and stored[1].correlation_id == "c"
            with pytest.raises(BadRequest, match=r"events\[1\]: topic"):
                await bus.publish_batch([{"topic": "a.three"}, {"topic": "bad topic"}])
            assert [e.topic for e in await bus.history()] == ["a.one", "a.two"]

    run(scenario())


def test_history_filters(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            root = await bus.publish("task.created", correlation_id="s1")
            effect = await bus.publish("task.started", correlation_id="s1", causation_id=root.id)
            await bus.publish("task.created", correlation_id="s2")
            assert [e.id for e in await bus.history(correlation_id="s1")] == [root.id, effect.id]
            assert [e.correlation_id for e in await bus.history(topic="task.created", limit=1)] == ["s2"]
            assert [e.id for e in await bus.history(caused_by=root.id)] == [root.id, effect.id]
            assert [e.id for e in await bus.history(event_id=effect.id)] == [effect.id]
            assert len(await bus.history(topic="task.#", after_sequence=1)) == 2

    run(scenario())


def test_bad_arguments_get_one_clear_error(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            with pytest.raises(BadRequest, match="topic"):
                await bus.publish("no spaces")
            with pytest.raises(UsageError, match="wildcards"):
                await bus.subscribe("tool.*", Recorder())
            with pytest.raises(UsageError, match="durable subscription needs a name"):
                await bus.subscribe("a.b", Recorder(), durable=True)
            with pytest.raises(UsageError, match=r"max_retries: Input should be greater than or equal to 0"):
                await bus.subscribe("a.b", Recorder(), max_retries=-1)
            assert bus.subscriptions == []

    run(scenario())


# -- subscriptions ------------------------------------------------------------------------


def test_subscribe_delivers_in_order_and_runs_plain_functions_in_a_thread(open_bus: Any) -> None:
    threads: list[int] = []

    def plain(event: StoredEvent) -> None:
        threads.append(threading.get_ident())

    async def scenario() -> None:
        async with open_bus() as bus:
            got = Recorder()
            sub = await bus.subscribe("build.done", got)
            await bus.subscribe("build.done", plain)
            assert bus.subscriptions[0].id == sub.id
            for n in range(5):
                await bus.publish("build.done", n)
                await bus.publish("build.other", n)
            await until(lambda: len(got.events) == 5 and len(threads) == 5, "both handlers")
            assert got.payloads == [0, 1, 2, 3, 4]
            assert threading.get_ident() not in threads

    run(scenario())


def test_subscribe_pattern(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            failed, everything = Recorder(), Recorder()
            await bus.subscribe_pattern("tool.*.failed", failed)
            await bus.subscribe_pattern("tool.#", everything)
            for topic in ["tool.bash.failed", "tool.bash.completed", "tool.mcp.x.failed", "tool"]:
                await bus.publish(topic, topic)
            await until(lambda: len(everything.events) == 4, "tool.# to see all four")
            assert failed.payloads == ["tool.bash.failed"]

    run(scenario())


def test_subscribe_filtered_with_a_callable_or_jmespath(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            by_callable, by_jmespath = Recorder(), Recorder()
            await bus.subscribe_filtered("tool.done", by_callable, lambda e: e.payload["ms"] > 500)
            await bus.subscribe_filtered("tool.done", by_jmespath, "payload.ms < `100`")
            for ms in [50, 900, 300, 1200]:
                await bus.publish("tool.done", {"ms": ms})
            await bus.publish("tool.done", {"ms": 10, "last": True})
            await until(lambda: len(by_jmespath.events) == 2, "the jmespath subscriber")
            await until(lambda: by_callable.calls == 2, "the callable subscriber")
            assert [p["ms"] for p in by_callable.payloads] == [900, 1200]
            assert [p["ms"] for p in by_jmespath.payloads] == [50, 10]

    run(scenario())


def test_unsubscribe_stops_deliveries(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            gone, marker = Recorder(), Recorder()
            sub = await bus.subscribe("a.b", gone)
            await bus.publish("a.b", 1)
            await until(lambda: gone.payloads == [1], "the first event")
            assert await bus.unsubscribe(sub.id) is True
            assert await bus.unsubscribe(sub.id) is False
            with pytest.raises(UsageError, match="has ended"):
                await sub.ack("evt_anything")
            await bus.subscribe("a.b", marker)
            await bus.publish("a.b", 2)
            await until(lambda: marker.payloads == [2], "the other subscriber")
            assert gone.payloads == [1]

    run(scenario())


def test_retries_then_success(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            flaky = Recorder(fail=2)
            await bus.subscribe("job.run", flaky, max_retries=3, retry_delay_s=0.01)
            await bus.publish("job.run", "x")
            await until(lambda: flaky.payloads == ["x"], "the third attempt")
            assert flaky.calls == 3
            assert await bus.dead_letters() == []

    run(scenario())


def test_a_failing_handler_ends_in_the_dead_letters(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            broken = Recorder(fail=100)
            await bus.subscribe("job.run", broken, name="indexer", max_retries=2, retry_delay_s=0.01)
            event = await bus.publish("job.run", {"n": 1})
            [letter] = await until(bus.dead_letters, "a dead letter")
            assert broken.calls == 3
            assert letter["subscriber"] == "indexer" and letter["retryCount"] == 2
            assert letter["originalEvent"]["id"] == event.id
            assert letter["error"]["message"] == "RuntimeError: failure 3"
            assert "Traceback" in letter["error"]["detail"]
            failed_events = await until(lambda: bus.history(topic="event.handler.failed"), "the failure")
            assert failed_events[0].causation_id == event.id
            assert failed_events[0].payload["subscription"] == "indexer"
            assert failed_events[0].payload["deadLetterId"] == letter["id"]

    run(scenario())


def test_timeout_fails_the_attempt(open_bus: Any) -> None:
    async def slow(event: StoredEvent) -> None:
        await asyncio.sleep(30)

    async def scenario() -> None:
        async with open_bus() as bus:
            await bus.subscribe("job.run", slow, name="slow", max_retries=0, timeout_s=0.1)
            await bus.publish("job.run")
            [letter] = await until(bus.dead_letters, "a dead letter")
            assert letter["error"]["message"] == "timed out after 0.1 s"

    run(scenario())


def test_manual_ack(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            acked: list[Any] = []

            async def acking(event: StoredEvent) -> None:
                if event.payload == "nack-once" and not acked:
                    acked.append("nacked")
                    await sub.nack(event)
                    return
                await sub.ack(event)
                acked.append(event.payload)

            sub = await bus.subscribe("job.run", acking, ack="manual", retry_delay_s=0.01)
            await bus.publish("job.run", "nack-once")
            await bus.publish("job.run", "fine")
            await until(lambda: acked == ["nacked", "nack-once", "fine"], "acks, the nack retried")

            silent = Recorder()
            await bus.subscribe(
                "job.quiet", silent, name="quiet", ack="manual", ack_wait_s=0.1, max_retries=0
            )
            await bus.publish("job.quiet")
            [letter] = await until(bus.dead_letters, "a dead letter for the silent one")
            assert letter["subscriber"] == "quiet" and letter["error"]["message"] == "no ack within 0.1 s"

    run(scenario())


def test_queue_group_shares_the_events(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            first, second = Recorder(), Recorder()
            await bus.subscribe("job.run", first, queue="workers")
            await bus.subscribe("job.run", second, queue="workers")
            await bus.publish_batch([{"topic": "job.run", "payload": n} for n in range(40)])
            await until(lambda: len(first.events) + len(second.events) == 40, "all 40 handled")
            assert sorted(first.payloads + second.payloads) == list(range(40))
            assert first.events and second.events

    run(scenario())


def test_durable_subscription_resumes_from_its_cursor(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            got = Recorder()
            sub = await bus.subscribe("job.run", got, name="indexer", durable=True)
            await bus.publish("job.run", 1)
            await until(lambda: got.payloads == [1], "the first event")
            await bus.unsubscribe(sub.id)
            await bus.publish_batch([{"topic": "job.run", "payload": n} for n in (2, 3)])
            again, fresh = Recorder(), Recorder()
            await bus.subscribe("job.run", again, name="indexer", durable=True)
            await bus.subscribe("job.run", fresh)  # not durable: only what comes next
            await bus.publish("job.run", 4)
            await until(lambda: again.payloads == [2, 3, 4] and fresh.payloads == [4], "the resumed one")

    run(scenario())


def test_once(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            with pytest.raises(EventTimeout, match=r"no review\.approved event within 0\.1 s") as caught:
                await bus.once("review.approved", timeout_s=0.1)
            assert isinstance(caught.value, TimeoutError)
            waiting = asyncio.ensure_future(bus.once("review.approved"))
            await until(lambda: len(bus.subscriptions) == 1, "once to subscribe")
            await bus.publish("review.other")
            published = await bus.publish("review.approved", {"by": "ana"})
            assert (await waiting).id == published.id
            assert bus.subscriptions == []
            # After a given sequence: an event stored before the call is found.
            request = await bus.publish("review.requested")
            answer = await bus.publish("review.approved", {"by": "bo"})
            assert (await bus.once("review.approved", after_sequence=request.sequence)).id == answer.id
            with pytest.raises(EventTimeout):
                await bus.once("review.approved", timeout_s=0.1, after_sequence=answer.sequence)

    run(scenario())


def test_replay_over_a_time_range(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            before = await bus.publish("build.done", "before")
            await until(lambda: now_iso() > before.timestamp, "the clock to move on")
            inside = [await bus.publish("build.done", n) for n in range(3)]
            await bus.publish("build.other", "other topic")
            await until(lambda: now_iso() > inside[-1].timestamp, "the clock to move on")
            await bus.publish("build.done", "after")
            seen = Recorder()
            replayed = await bus.replay("build.done", inside[0].timestamp, inside[-1].timestamp, seen)
            assert [e.payload for e in replayed] == [0, 1, 2] == seen.payloads
            assert len(await bus.replay("build.#", since=inside[0].timestamp)) == 5

    run(scenario())


def test_a_queue_member_leaving_hands_its_event_to_another(open_bus: Any) -> None:
    async def scenario() -> None:
        async with open_bus() as bus:
            stuck = asyncio.Event()
            calls: list[Any] = []

            async def hangs(event: StoredEvent) -> None:
                calls.append(event.payload)
                stuck.set()
                await asyncio.sleep(30)

            taker = Recorder()
            leaving = await bus.subscribe("job.run", hangs, queue="workers", timeout_s=60)
            await bus.publish("job.run", "first")
            await until(stuck.is_set, "the first member to take the event")
            await bus.subscribe("job.run", taker, queue="workers")
            await bus.unsubscribe(leaving.id)
            await until(lambda: taker.payloads == ["first"], "the event to move to the other member")
            await bus.publish("job.run", "second")
            await until(lambda: taker.payloads == ["first", "second"], "the next one")
            assert calls == ["first"]

    run(scenario())
