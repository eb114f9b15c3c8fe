"""Webhooks against real HTTP receivers on 127.0.0.1, formats checked by the official libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import support
from receiver import Receiver
from support import DaemonProcess, World, wait_until

SECRET = "s3cret-value-never-logged"
WHSEC = "whsec_" + base64.b64encode(b"a-standard-webhooks-key-32-bytes").decode()
WHSEC_NEXT = "whsec_" + base64.b64encode(b"the-next-key-during-a-rotation!!").decode()


def configure(world: World, endpoints: list[dict[str, Any]], **webhooks: Any) -> None:
    retry = {"maxAttempts": 3, "backoff": "exponential", "initialDelay": 20, "maxDelay": 200}
    config = {"events": {"webhooks": {"endpoints": endpoints, "retry": retry, **webhooks}}}
    support.configure(world, config)


def endpoint(receiver: Receiver, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": name, "url": f"{receiver.url}/{name}", "events": ["*"], **fields}


def deliveries(world: World) -> list[dict[str, Any]]:
    path = world.project / ".elsabro" / "deliveries.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_elsabro_format_is_the_seeds_body_and_hmac(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    configure(world, [endpoint(receiver, "plain", secret=SECRET)])
    stored = world.client().publish({"topic": "agent.started", "payload": {"agentId": "a1"}})
    [hit] = wait_until(lambda: receiver.at("/plain"), what="the delivery")
    assert json.loads(hit.body) == {
        "event": "AgentStarted",
        "timestamp": stored["timestamp"],
        "data": {"agentId": "a1"},
    }
    expected = hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["x-webhook-signature"] == expected
    assert hit.headers["content-type"] == "application/json"


def test_sha512_and_a_custom_header(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(
        world,
        [endpoint(receiver, "strong", secret=SECRET, headers={"X-Team": "core"})],
        signing={"enabled": True, "algorithm": "sha512", "header": "X-Sig"},
    )
    world.client().publish({"topic": "a.b"})
    [hit] = wait_until(lambda: receiver.at("/strong"), what="the delivery")
    assert hit.headers["x-sig"] == hmac.new(SECRET.encode(), hit.body, hashlib.sha512).hexdigest()
    assert hit.headers["x-team"] == "core"


def test_standard_webhooks_verified_by_the_official_library(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    from standardwebhooks.webhooks import Webhook

    configure(world, [endpoint(receiver, "std", format="standard", secret=[WHSEC, WHSEC_NEXT])])
    stored = world.client().publish({"topic": "task.created", "payload": {"taskId": "7"}})
    [hit] = wait_until(lambda: receiver.at("/std"), what="the delivery")
    for secret in (WHSEC, WHSEC_NEXT):  # both signatures of the rotation verify
        assert Webhook(secret).verify(hit.body, hit.headers)["data"] == {"taskId": "7"}
    assert hit.headers["webhook-id"] == stored["id"]
    assert len(hit.headers["webhook-signature"].split(" ")) == 2


def test_cloudevents_verified_by_the_official_sdk(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_http
    from cloudevents.core.formats.json import JSONFormat

    configure(world, [endpoint(receiver, "ce", format="cloudevents")])
    stored = world.client().publish(
        {"topic": "tool.bash.completed", "payload": {"ok": True}, "correlationId": "s1"}
    )
    [hit] = wait_until(lambda: receiver.at("/ce"), what="the delivery")
    assert hit.headers["content-type"] == "application/cloudevents+json"
    event = from_http(HTTPMessage(hit.headers, hit.body), JSONFormat())
    assert event.get_specversion() == "1.0" and event.get_id() == stored["id"]
    assert event.get_type() == "tool.bash.completed"
    assert event.get_time().isoformat(timespec="milliseconds").replace("+00:00", "Z") == stored["timestamp"]
    assert (
        event.get_extension("correlationid") == "s1" and event.get_extension("sequence") == stored["sequence"]
    )
    assert event.get_data() == {"ok": True}


def test_fails_twice_then_succeeds_with_the_same_webhook_id(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    configure(world, [endpoint(receiver, "flaky", format="standard", secret=WHSEC)])
    receiver.on("/flaky", (500, {}, 0.0), (502, {}, 0.0))
    world.client().publish({"topic": "x.y"})
    hits = wait_until(
        lambda: len(receiver.at("/flaky")) == 3 and receiver.at("/flaky"), what="three attempts"
    )
    assert len({hit.headers["webhook-id"] for hit in hits}) == 1
    wait_until(lambda: len(deliveries(world)) == 3, what="the delivery log")
    log = deliveries(world)
    assert [(e["attempt"], e["statusCode"], e["status"]) for e in log] == [
        (1, 500, "failed"),
        (2, 502, "failed"),
        (3, 200, "success"),
    ]
    assert all(e["deliveryId"] == log[0]["deliveryId"] and e["latencyMs"] >= 0 for e in log)
    assert log[-1]["response"] == "ok"


def test_a_receiver_down_for_the_whole_schedule_dead_letters_then_retry(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    configure(world, [endpoint(receiver, "down")])
    receiver.always["/down"] = 500
    stored = world.client().publish({"topic": "x.y"})
    wait_until(
        lambda: any(r["topic"] == "event.handler.failed" for r in world.events()), what="the failure event"
    )
    [failed] = [r for r in world.events() if r["topic"] == "event.handler.failed"]
    assert (
        failed["payload"]["subscription"] == "webhook:down" and failed["payload"]["eventId"] == stored["id"]
    )
    assert len(receiver.at("/down")) == 3
    rows = world.cli("webhooks", "deliveries", "--status", "failed", "--json").stdout.splitlines()
    [row] = [json.loads(r) for r in rows]
    assert row["attempts"] == 3 and row["endpoint"] == "down"
    assert world.cli("webhooks", "retry", row["deliveryId"], check=False).returncode == 1  # still down
    receiver.always["/down"] = 200
    assert "succeeded 1" in world.cli("webhooks", "retry", row["deliveryId"]).stdout
    assert world.cli("webhooks", "deliveries", "--status", "failed").stdout == ""
    assert "webhook:down" in world.cli("dlq", "list").stdout


def test_410_gone_disables_the_endpoint(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(world, [endpoint(receiver, "gone")])
    receiver.on("/gone", (410, {}, 0.0))
    world.client().publish({"topic": "x.one"})
    wait_until(lambda: "false" in (world.project / ".elsabro" / "config.json").read_text(), what="disabled")
    config = json.loads((world.project / ".elsabro" / "config.json").read_text())
    assert config["events"]["webhooks"]["endpoints"][0]["enabled"] is False
    world.client().publish({"topic": "x.two"})
    wait_until(
        lambda: "410" in (world.home / ".local/state/elsabro/log/daemon.log").read_text(), what="log line"
    )
    assert len(receiver.at("/gone")) == 1  # one attempt, no retries, nothing more
    # elsabro's own edit keeps the config trusted: its other handlers go on running.
    assert "trusted: " in world.cli("trust", "--show").stdout


def test_429_waits_for_retry_after(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(world, [endpoint(receiver, "slowdown")])
    receiver.on("/slowdown", (429, {"Retry-After": "1"}, 0.0))
    world.client().publish({"topic": "x.y"})
    first, second = wait_until(
        lambda: len(receiver.at("/slowdown")) == 2 and receiver.at("/slowdown"), what="2"
    )
    assert second.at - first.at >= 0.9  # the configured backoff alone would be 20 ms


def test_redirects_are_not_followed(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(world, [endpoint(receiver, "moved")])
    receiver.always["/moved"] = 302
    world.client().publish({"topic": "x.y"})
    wait_until(lambda: len(receiver.at("/moved")) == 3, what="three attempts")
    wait_until(lambda: len(deliveries(world)) == 3, what="the log")
    assert {e["statusCode"] for e in deliveries(world)} == {302}
    assert [h.path for h in receiver.hits] == ["/moved"] * 3


def test_a_slow_receiver_hits_the_timeout(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(world, [endpoint(receiver, "slow", timeout=300)])
    receiver.on("/slow", (200, {}, 2.0))
    world.client().publish({"topic": "x.y"})
    wait_until(lambda: deliveries(world), what="the first attempt logged")
    assert deliveries(world)[0]["error"] == "timed out after 0.3 s"


def test_events_arrive_in_log_order(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(world, [endpoint(receiver, "ordered", events=["n.*"])])
    receiver.on("/ordered", (500, {}, 0.0))  # the first event needs a retry: the others wait for it
    client = world.client()
    for n in range(6):
        client.publish({"topic": f"n.e{n}"})
        client.publish({"topic": "other.topic"})
    wait_until(lambda: len(receiver.at("/ordered")) == 7, what="seven requests")
    bodies = [json.loads(h.body)["event"] for h in receiver.at("/ordered")]
    assert bodies == ["NE0", "NE0", "NE1", "NE2", "NE3", "NE4", "NE5"]


def test_pending_deliveries_survive_kill_9(world: World, receiver: Receiver) -> None:
    configure(
        world,
        [endpoint(receiver, "durable", format="standard", secret=WHSEC)],
    )
    receiver.always["/durable"] = 503  # nothing gets through before the crash
    daemon = DaemonProcess(world).start()
    stored = [world.client().publish({"topic": "k.e", "payload": n}) for n in range(5)]
    wait_until(lambda: receiver.at("/durable"), what="a first attempt")
    daemon.kill()
    receiver.always["/durable"] = 200
    DaemonProcess(world).start()
    world.client().publish({"topic": "after.restart"})
    wait_until(
        lambda: (
            {h.headers["webhook-id"] for h in receiver.at("/durable") if h.headers.get("webhook-id")}
            >= {s["id"] for s in stored}
        ),
        timeout_s=20,
        what="every pending delivery",
    )
    delivered = [h for h in receiver.at("/durable") if json.loads(h.body)["type"] == "KE"]
    ok_ids = [h.headers["webhook-id"] for h in delivered]
    first_seen = list(dict.fromkeys(ok_ids))
    assert first_seen == [s["id"] for s in stored]  # in order, each at least once, same ids


def test_endpoints_added_updated_removed_from_the_cli_while_events_flow(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    client = world.client()
    client.publish({"topic": "before.any"})
    world.cli(
        "webhooks", "add", "live", "--url", f"{receiver.url}/live", "--events", "a.*", "--secret", SECRET
    )
    assert "live" in world.cli("webhooks", "list").stdout
    assert SECRET not in world.cli("webhooks", "list").stdout

    def delivered() -> list[str]:
        return [json.loads(h.body)["event"] for h in receiver.at("/live")]

    wait_until(lambda: client.publish({"topic": "a.x"}) and "AX" in delivered(), what="the new endpoint")
    world.cli("webhooks", "update", "live", "--events", "b.*")
    wait_until(lambda: client.publish({"topic": "b.y"}) and "BY" in delivered(), what="the updated endpoint")
    world.cli("webhooks", "remove", "live")
    wait_until(lambda: "live" not in world.cli("subscriptions", "list").stdout, what="the endpoint to go")
    count = len(delivered())
    client.publish({"topic": "b.y"})
    client.publish({"topic": "a.x"})
    time.sleep(0.3)  # proving a negative: nothing more arrives
    assert len(delivered()) == count
    bad = world.cli("webhooks", "add", "bad", "--url", "ftp://nope", check=False)
    assert bad.returncode == 1 and "url" in bad.stderr


def test_a_subscription_can_deliver_through_an_endpoint(
    world: World, daemon: DaemonProcess, receiver: Receiver
) -> None:
    config = {
        "events": {"webhooks": {"endpoints": [endpoint(receiver, "via", enabled=False)]}},
        "subscriptions": [
            {
                "name": "to-hook",
                "topic": "s.t",
                "filter": "payload.n > `1`",
                "handler": {"type": "webhook", "endpoint": "via"},
            }
        ],
    }
    support.configure(world, config)
    world.client().publish({"topic": "s.t", "payload": {"n": 1}})
    world.client().publish({"topic": "s.t", "payload": {"n": 2}})
    [hit] = wait_until(lambda: receiver.at("/via"), what="the subscription's delivery")
    assert json.loads(hit.body)["data"] == {"n": 2}


def test_secrets_never_reach_any_log(world: World, daemon: DaemonProcess, receiver: Receiver) -> None:
    configure(
        world,
        [
            endpoint(receiver, "secretive", secret=SECRET),
            {"id": "creds", "url": f"http://user:{SECRET}@127.0.0.1:9/x", "secret": SECRET},
        ],
    )
    world.client().publish({"topic": "x.y"})
    wait_until(lambda: any(r["topic"] == "event.handler.failed" for r in world.events()), what="a failure")
    texts = [
        (world.home / ".local/state/elsabro/log/daemon.log").read_text(),
        (world.project / ".elsabro" / "deliveries.jsonl").read_text(),
        (world.project / ".elsabro" / "deadletters.jsonl").read_text(),
        world.cli("webhooks", "deliveries").stdout,
        world.cli("subscriptions", "list", "--json").stdout,
    ]
    assert all(SECRET not in text for text in texts)
    assert any("creds" in text for text in texts)
