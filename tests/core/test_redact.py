"""Redaction: secrets in payloads are replaced by a marker before anything is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from elsabro.core.redact import Rules, redact_event, redact_text, redact_value
from support import DaemonProcess, World

# Fragments of the secrets below that must never survive redaction.
SECRETS = [
    "a1B2a1B2",
    "Zz09Zz09",
    "AAAAAAAAAAAA",
    "0123456789_abc",
    "x1Y2x1Y2",
    "abcdefABCDEF",
    "XXXXXXXX",
    "IOSFODNN7",
    "SSSSSSSSSS",
    "dozjgNryP4J3",
    "b3BlbnNzaC1",
    "qrstuvwxyz123456",
    "dXNlcjpw",
    "hunter2",
    "correcthorse",
    "q8F3kLmN0pQ",
]

CASES = [
    ("anthropic-key", "key sk-ant-api03-" + "a1B2" * 10),
    ("openai-key", "export OPENAI=sk-proj-" + "Zz09" * 8),
    ("github-token", "git clone https://x-access-token@github.com ghp_" + "A" * 36),
    ("github-token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"),
    ("gitlab-token", "glpat-" + "x1Y2" * 5),
    ("slack-token", "xoxb-123456789012-abcdefABCDEF"),
    ("slack-webhook", "https://hooks.slack.com/services/T000/B000/XXXXXXXX"),
    ("aws-access-key", "AKIAIOSFODNN7EXAMPLE"),
    ("google-api-key", "AIza" + "S" * 35),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    (
        "private-key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ),
    ("bearer-token", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456"),
    ("basic-auth", "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw=="),
    ("url-password", "postgres://admin:hunter2hunter2@db.internal:5432/app"),
    ("secret-assignment", "DB_PASSWORD=correcthorsebatterystaple"),
    ("secret-assignment", 'client_secret: "q8F3kLmN0pQ"'),
]


@pytest.mark.parametrize(("kind", "text"), CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_each_kind_of_secret_is_replaced_by_its_marker(kind: str, text: str) -> None:
    redacted = redact_text(text, Rules())
    assert f"[REDACTED:{kind}]" in redacted
    for secret in SECRETS:
        if secret in text:
            assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "hello world, nothing secret here; the token count is 5",
        "def get_token(): return self._token",
        "PATH=/usr/local/bin:/usr/bin",
        "https://example.com/path?page=2",
        "sk-short",
        "git commit -m 'fix the password reset form'",
        '{"usage": {"total_tokens": 1234, "max_tokens": 4096}}',
        "token: None, password: null",
        "ssh://git@github.com:22/org/repo.git and https://host.test:8443/path",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text, Rules()) == text


def test_values_under_secret_keys_are_replaced_whole_and_structure_is_kept() -> None:
    value = {"password": "x1", "api_key": 12345, "nested": [{"token": "abc"}, {"tokens_used": 5}], "n": 3}
    assert redact_value(value, Rules()) == {
        "password": "[REDACTED:secret-field]",
        "api_key": "[REDACTED:secret-field]",
        "nested": [{"token": "[REDACTED:secret-field]"}, {"tokens_used": 5}],
        "n": 3,
    }


def test_project_rules_add_patterns_drop_and_hash_paths() -> None:
    rules = Rules(
        patterns=(("ticket", r"TICKET-\d{4,}"),),
        drop_paths=("payload.tool_response",),
        hash_paths=("payload.tool_input.command",),
    )
    record: dict[str, Any] = {
        "topic": "tool.bash.completed",
        "metadata": None,
        "payload": {"tool_input": {"command": "echo hi", "note": "see TICKET-12345"}, "tool_response": "big"},
    }
    redacted = redact_event(record, rules)
    assert "tool_response" not in redacted["payload"]
    assert redacted["payload"]["tool_input"]["command"].startswith("sha256:")
    assert redacted["payload"]["tool_input"]["note"] == "see [REDACTED:ticket]"
    assert record["payload"]["tool_response"] == "big"  # the original is not changed


def test_disabled_rules_store_as_is() -> None:
    record = {"payload": "AKIAIOSFODNN7EXAMPLE", "metadata": None}
    assert redact_event(record, Rules(enabled=False)) == record


def test_a_hook_payload_with_secrets_never_reaches_the_log(world: World, daemon: DaemonProcess) -> None:
    key = "sk-ant-api03-" + "Q7w" * 12
    payload = {
        "hook_event_name": "PostToolUse",
        "session_id": "s1",
        "tool_name": "Bash",
        "tool_use_id": "t1",
        "tool_input": {"command": f"ANTHROPIC_API_KEY={key} claude -p hi"},
        "tool_response": {"stdout": f"token ghp_{'B' * 36}\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"},
    }
    import subprocess

    from support import REPO

    env = {**world.env, "CLAUDE_PROJECT_DIR": str(world.project)}
    hook = REPO / "hooks" / "elsabro-hook.sh"
    subprocess.run(["sh", str(hook)], input=json.dumps(payload).encode(), env=env, check=True, timeout=30)
    stored = world.client().publish({"topic": "manual.note", "payload": {"db": "postgres://u:s3cr3tpw@h/db"}})
    raw = b"".join(p.read_bytes() for p in (world.project / ".elsabro" / "events").glob("segment-*"))
    assert key.encode() not in raw and b"B" * 36 not in raw and b"s3cr3tpw" not in raw
    assert b"[REDACTED:" in raw
    assert "[REDACTED:url-password]" in stored["payload"]["db"]  # what the publisher gets back too
    assert b"claude -p hi" in raw  # the rest of the command is kept


def test_redaction_rules_come_from_the_project_config(world: World, daemon: DaemonProcess) -> None:
    (world.project / ".elsabro").mkdir(exist_ok=True)
    (world.project / ".elsabro" / "config.json").write_text(
        json.dumps({"redaction": {"patterns": [{"name": "employee-id", "regex": "EMP-[0-9]{6}"}]}})
    )
    stored = world.client().publish({"topic": "hr.note", "payload": "reviewed EMP-123456 today"})
    assert stored["payload"] == "reviewed [REDACTED:employee-id] today"


def test_an_oversized_field_is_cut_with_its_size_and_hash() -> None:
    import hashlib

    big = "line of output\n" * 100_000  # 1.5 MB
    stored = redact_event({"payload": {"tool_response": big, "small": "ok"}, "metadata": None}, Rules())
    cut = stored["payload"]["tool_response"]
    assert len(cut) < 1024 * 1024 + 200 and cut.startswith("line of output\n")
    assert cut.endswith(f"[TRUNCATED: {len(big)} bytes, sha256:{hashlib.sha256(big.encode()).hexdigest()}]")
    assert stored["payload"]["small"] == "ok"
    unredacted = redact_event({"payload": big, "metadata": None}, Rules(enabled=False, max_field_chars=1000))
    assert "[TRUNCATED:" in unredacted["payload"] and len(unredacted["payload"]) < 1200


def test_the_size_limit_comes_from_the_config(world: World, daemon: DaemonProcess) -> None:
    (world.project / ".elsabro").mkdir(exist_ok=True)
    (world.project / ".elsabro" / "config.json").write_text(json.dumps({"limits": {"maxFieldChars": 2048}}))
    stored = world.client().publish({"topic": "big.write", "payload": {"content": "x" * 10_000}})
    assert stored["payload"]["content"].startswith("x" * 2048 + "[TRUNCATED: 10000 bytes, sha256:")
