"""Secrets nowhere: realistic hook payloads full of secrets go through the real hook and a real
daemon, a failing handler prints a secret, a webhook receiver echoes the Authorization header,
an oversized payload is cut short; afterwards no secret is in any file elsabro wrote."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from elsabro.core.errors import ElsabroError
from elsabro.core.redact import Rules, redact_event, redact_value
from elsabro.daemon.logs import RedactingFilter
from receiver import Receiver
from support import DaemonProcess, World, configure, payload, run_hook, wait_until

GH = "ghp_" + "Gh7tOkEn9" * 4  # 40 characters after the prefix
PGP_BODY = "lQOYBGVpgpPrivBodyLine0123456789abcdef"
SPLIT_KEY = "MIIEowIBAAKCAQEAsplitKeyLineQwErTy0987"
HANDLER_PW = "HandlerPw-Zq81Lx"
WEBHOOK_AUTH = "WebhookAuth-Yy72Kp40"
LIMIT_BYTES = 1024 * 1024  # the daemon's request limit in this test, so an oversized payload is cheap

# Each secret, the text around it, and where Claude Code puts it.
SECRETS: dict[str, str] = {
    "mysql": "MySqlS3cretPw",
    "pgpassword": "PgS3cretPw42",
    "sshpass": "SshS3cretPw77",
    "password-flag": "CurlS3cretPw55",
    "x-api-key": "XApiS3cretValue123",
    "json-text": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "pgp": PGP_BODY,
    "split-key": SPLIT_KEY,
    "stripe": "sk_live_" + "51HxStripeSecret00" * 2,
    "npm": "npm_" + "NpmT0kenValue" * 3,
    "huggingface": "hf_" + "HuggingFaceTok" * 3,
    "slack-app": "xapp-1-A0123-4567890123-" + "abcdef0123" * 3,
    "groq": "gsk_" + "GroqKeyValue12" * 4,
    "url-empty-user": "EmptyUserPw123",
    "url-at-inside": "ssW0rdAtInside",
    "list-value": "ListS3cretValue",
    "object-value": "ObjS3cretValue",
    "object-key": GH,
    "correlation": "sk-ant-api03-" + "CorrelationId" * 3,
    "causation": "glpat-" + "CausationId123456789",
    "source": "AKIA" + "SOURCE0123456789",
    "type": "AIza" + "TypeFieldSecret0123456789abcdefghij",
    "handler": HANDLER_PW,
    "webhook": WEBHOOK_AUTH,
    "oversized": "OversizedTailPw-K9",
}


def _bash(command: str, stdout: str = "") -> dict[str, Any]:
    body = payload("PostToolUse")
    body["tool_input"] = {"command": command, "description": "run it"}
    body["tool_response"] = {"stdout": stdout, "stderr": "", "interrupted": False, "isImage": False}
    return body


def _tool(name: str, tool_input: dict[str, Any], response: Any) -> dict[str, Any]:
    body = payload("PostToolUse")
    body.update(tool_name=name, tool_input=tool_input, tool_response=response)
    return body


def hook_payloads() -> list[dict[str, Any]]:
    s = SECRETS
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{s['pgp']}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----\n"
    return [
        _bash(f"mysql -u root -p{s['mysql']} app -e 'select 1'"),
        _bash(f"PGPASSWORD={s['pgpassword']} psql -h db -U app"),
        _bash(f"sshpass -p {s['sshpass']} ssh deploy@host uptime"),
        _bash(f"curl --password={s['password-flag']} -H 'x-api-key: {s['x-api-key']}' https://api.test/x"),
        _bash(
            "aws sts get-session-token",
            json.dumps(
                {"Credentials": {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": s["json-text"]}}
            ),
        ),
        _tool("Write", {"file_path": "/home/dev/key.asc", "content": pgp}, {"type": "create"}),
        _tool(
            "Write",
            {"file_path": "/home/dev/id_rsa", "content": "redacted by the content detector"},
            {
                "type": "update",
                "structuredPatch": [
                    {
                        "oldStart": 1,
                        "lines": [
                            "+-----BEGIN RSA PRIVATE KEY-----",
                            f"+{s['split-key']}",
                            "+-----END RSA PRIVATE KEY-----",
                        ],
                    }
                ],
            },
        ),
        _tool(
            "Read",
            {"file_path": "/home/dev/demo/.env"},
            {
                "type": "text",
                "file": {
                    "filePath": "/home/dev/demo/.env",
                    "content": f"STRIPE={s['stripe']}\nNPM={s['npm']}\nHF={s['huggingface']}\n",
                },
            },
        ),
        _bash("env", f"SLACK_APP={s['slack-app']}\nGROQ={s['groq']}\nHOME=/home/dev\n"),
        _bash(
            f"git clone https://:{s['url-empty-user']}@git.test/a.git && "
            f"curl https://deploy:p@{s['url-at-inside']}@host.test/path"
        ),
        _tool(
            "mcp__vault__login", {"api_key": [s["list-value"]], "token": {"value": s["object-value"]}}, "ok"
        ),
        _tool("mcp__cache__put", {"entries": {s["object-key"]: True}}, "stored"),
    ]


def _files_with_secrets(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes().decode("utf-8", "replace")
                found += [f"{path}: {name}" for name, secret in SECRETS.items() if secret in data]
    return found


def test_no_secret_reaches_any_file_elsabro_writes(world: World, receiver: Receiver) -> None:
    # The handler's secret reaches it through the daemon's environment, the webhook's through a
    # reference, so the config file itself holds none.
    world.env.update(LEAK_PW=HANDLER_PW, LEAK_GH=GH, HOOK_AUTH=f"Bearer {WEBHOOK_AUTH}")
    world.env["ELSABRO_MAX_REQUEST_BYTES"] = str(LIMIT_BYTES)
    receiver.echo.add("/echo")
    configure(
        world,
        {
            "subscriptions": [
                {
                    "name": "leaky",
                    "pattern": "#",
                    "options": {"maxRetries": 0},
                    "handler": {
                        "type": "exec",
                        "argv": ["sh", "-c", 'echo "failed: password=$LEAK_PW token $LEAK_GH" >&2; exit 1'],
                    },
                }
            ],
            "events": {
                "webhooks": {
                    "endpoints": [
                        {
                            "id": "echo",
                            "url": f"{receiver.url}/echo",
                            "events": ["*"],
                            "headers": {"Authorization": {"env": "HOOK_AUTH"}},
                        }
                    ]
                }
            },
        },
    )
    DaemonProcess(world).start()
    sent = hook_payloads()
    for body in sent:
        assert run_hook(world, body).returncode == 0
    client = world.client()
    client.publish(
        {
            "topic": "deploy.started",
            "type": SECRETS["type"],
            "source": SECRETS["source"],
            "correlationId": SECRETS["correlation"],
            "causationId": SECRETS["causation"],
            "payload": {"note": "published with secrets in its envelope"},
        }
    )
    # Larger than the daemon takes: it refuses it part-way and the hook spools the rest.
    filler = "x" * (3 * LIMIT_BYTES)
    oversized = json.dumps({**_bash("cat big.log", filler), "tail": f"password={SECRETS['oversized']}"})
    assert run_hook(world, oversized.encode()).returncode == 0

    elsabro_dir = world.project / ".elsabro"
    # The daemon's state and log, under the test world's HOME (platformdirs' layout there).
    state_dir = world.home / ".local" / "state" / "elsabro"
    wait_until(lambda: len(world.events()) >= len(sent) + 1, what="every event stored")
    wait_until(lambda: (elsabro_dir / "deadletters.jsonl").exists(), what="the handler's dead letters")
    wait_until(lambda: receiver.at("/echo"), what="a webhook delivery")
    wait_until(lambda: (elsabro_dir / "deliveries.jsonl").exists(), what="the delivery log")
    spool = elsabro_dir / "spool"
    wait_until(lambda: not any(spool.glob("*.json")), what="the spool drained")
    # The hook keeps the whole oversized payload and spools it when the daemon refuses it (413);
    # drained from the spool, it is stored like any event: redacted, its long field cut.
    commands = [(r["payload"] or {}).get("tool_input", {}).get("command") for r in world.events()]
    assert "cat big.log" in commands  # no raw tail anywhere: the check below reads every file
    # The receiver did get the real header: the reference was resolved at use.
    assert receiver.at("/echo")[0].headers["authorization"] == f"Bearer {WEBHOOK_AUTH}"
    assert WEBHOOK_AUTH in json.dumps(receiver.at("/echo")[0].headers)

    assert (state_dir / "log" / "daemon.log").exists()
    assert _files_with_secrets(elsabro_dir, state_dir) == []
    daemon_log = (state_dir / "log" / "daemon.log").read_text()
    assert "leaky" in daemon_log  # the handler's failure was logged, redacted
    stored = json.dumps(world.events())
    for kind in (
        "password-flag",
        "secret-assignment",
        "private-key",
        "stripe-key",
        "npm-token",
        "url-password",
    ):
        assert f"[REDACTED:{kind}]" in stored, kind


def test_config_check_warns_about_a_literal_secret(world: World) -> None:
    configure(
        world,
        {
            "events": {
                "webhooks": {
                    "endpoints": [
                        {"id": "literal", "url": "http://127.0.0.1:9/x", "secret": "in-the-file-Kq2"},
                        {"id": "ref", "url": "http://127.0.0.1:9/y", "secret": {"env": "HOOK_SECRET"}},
                        {"id": "userinfo", "url": "http://ci:in-the-url-Kq2@127.0.0.1:9/z"},
                    ]
                }
            }
        },
    )
    result = world.cli("config", "check")
    assert "webhook literal: secret is a literal secret" in result.stderr
    assert "webhook userinfo: url (its password) is a literal secret" in result.stderr
    assert "webhook ref" not in result.stderr
    assert "in-the-file-Kq2" not in result.stderr + result.stdout


def test_webhooks_add_stores_references(world: World, tmp_path: Path) -> None:
    configure(world, {})
    secret_file = world.home / "hook.secret"
    world.cli("webhooks", "add", "a", "--url", "http://127.0.0.1:9/a", "--secret-env", "HOOK_SECRET")
    world.cli("webhooks", "add", "b", "--url", "http://127.0.0.1:9/b", "--secret-file", str(secret_file))
    config = json.loads((world.project / ".elsabro" / "config.json").read_text())
    endpoints = {e["id"]: e for e in config["events"]["webhooks"]["endpoints"]}
    assert endpoints["a"]["secret"] == {"env": "HOOK_SECRET"}
    assert endpoints["b"]["secret"] == {"file": str(secret_file)}


def test_a_missing_reference_fails_that_delivery_with_one_line(world: World, receiver: Receiver) -> None:
    inside = world.project / "secret.txt"
    inside.write_text("committed-by-mistake")
    configure(
        world,
        {
            "events": {
                "webhooks": {
                    "retry": {"maxAttempts": 1},
                    "endpoints": [
                        {"id": "noenv", "url": f"{receiver.url}/a", "secret": {"env": "NOT_SET_ANYWHERE"}},
                        {"id": "inside", "url": f"{receiver.url}/b", "secret": {"file": str(inside)}},
                        {"id": "fine", "url": f"{receiver.url}/c"},
                    ],
                }
            }
        },
    )
    DaemonProcess(world).start()
    world.client().publish({"topic": "a.b", "payload": {}})
    wait_until(lambda: receiver.at("/c"), what="the healthy endpoint served")
    log = world.project / ".elsabro" / "deliveries.jsonl"
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, what="three attempts logged")
    errors = {row["endpoint"]: row["error"] for row in map(json.loads, log.read_text().splitlines())}
    assert errors["noenv"] == "the secret's environment variable NOT_SET_ANYWHERE is not set in the daemon"
    assert "inside the project" in errors["inside"] and "committed-by-mistake" not in errors["inside"]
    assert errors["fine"] is None
    assert not receiver.at("/a") and not receiver.at("/b")


def test_secret_named_keys_hide_whatever_they_hold() -> None:
    value = {"api_key": ["a-list-secret"], "password": {"nested": "an-object-secret"}}
    text = json.dumps(redact_value(value, Rules()))
    assert "a-list-secret" not in text and "an-object-secret" not in text


def test_the_budget_replaces_what_it_cannot_reach() -> None:
    record = {"id": "evt_1", "topic": "a", "payload": {"a": "token=" + "x" * 1000, "b": "plain text"}}
    redacted = redact_event(record, Rules(budget_ms=0.0))
    assert redacted["payload"] == {"a": "[REDACTED:budget]", "b": "[REDACTED:budget]"}
    assert redacted["id"] == "evt_1" and redacted["topic"] == "a"


def test_the_daemon_log_filter_redacts_any_logger_message_and_arguments(tmp_path: Path) -> None:
    # The filter the daemon puts on its log handlers, on a real file handler and httpx's logger.
    log_file = tmp_path / "daemon.log"
    handler = logging.FileHandler(log_file)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("httpx")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            'HTTP Request: %s %s "%s"', "POST", "https://deploy:UrlPw-in-args99@hooks.test/x", "HTTP/1.1 200"
        )
        try:
            raise RuntimeError(f"boom with {GH}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = log_file.read_text()
    assert "UrlPw-in-args99" not in text and GH not in text
    assert "[REDACTED:url-password]" in text and "RuntimeError" in text


def test_an_error_answer_does_not_quote_a_secret(world: World, daemon: DaemonProcess) -> None:
    with pytest.raises(ElsabroError) as raised:
        world.client().publish({"topic": f"deploy.{GH}!"})
    assert GH not in str(raised.value) and "[REDACTED:github-token]" in str(raised.value)


def test_a_subscription_test_hands_its_handler_a_redacted_event(world: World, tmp_path: Path) -> None:
    configure(
        world,
        {
            "subscriptions": [
                {"name": "t", "topic": "probe.one", "handler": {"type": "append", "path": "out.jsonl"}}
            ]
        },
    )
    DaemonProcess(world).start()
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"topic": "probe.one", "payload": {"cmd": f"git push https://{GH}@git.test/r"}})
    )
    assert world.cli("subscriptions", "test", "t", "--event", str(event)).stdout.strip() == "ok"
    written = (world.project / "out.jsonl").read_text()
    assert GH not in written and "[REDACTED:github-token]" in written
