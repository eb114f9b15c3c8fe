"""The project config: validation with exact JSON paths, merging, loops, the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from elsabro.config import files as config
from elsabro.config.schema import ProjectConfig
from elsabro.core.errors import ConfigError


def write(project: Path, data: Any) -> None:
    (project / ".elsabro").mkdir(exist_ok=True)
    (project / ".elsabro" / "config.json").write_text(json.dumps(data) if not isinstance(data, str) else data)


def sub(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "topic": "a.b", "handler": {"type": "append", "path": "x.jsonl"}, **fields}


def load(project: Path, user: Path | None = None) -> ProjectConfig:
    return config.load(project, user or project / "no-user-config.json")


def test_an_empty_project_has_the_seed_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.subscriptions == []
    assert loaded.events.store.retention.max_events is None
    assert loaded.events.webhooks.signing.header == "X-Webhook-Signature"
    assert loaded.events.webhooks.retry.initial_delay == 1000


def test_the_seed_configuration_block_is_accepted_as_written(tmp_path: Path) -> None:
    seed = {
        "events": {
            "enabled": True,
            "bus": {"maxListeners": 100, "defaultTimeout": 30000},
            "store": {
                "enabled": True,
                "backend": "file",
                "path": ".elsabro/events",
                "retention": {"maxEvents": 10000, "maxAge": "30d"},
                "snapshots": {"enabled": True, "frequency": 100},
            },
            "webhooks": {
                "enabled": True,
                "endpoints": [],
                "signing": {"enabled": True, "algorithm": "sha256", "header": "X-Webhook-Signature"},
                "retry": {
                    "maxAttempts": 3,
                    "backoff": "exponential",
                    "initialDelay": 1000,
                    "maxDelay": 30000,
                },
            },
        }
    }
    write(tmp_path, seed)
    assert load(tmp_path).events.store.retention.max_age == "30d"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"subscriptions": [sub("a", options={"maxRetries": "many"})]},
            "subscriptions[0].options.maxRetries:",
        ),
        (
            {"subscriptions": [sub("a"), {**sub("b"), "handler": {"type": "exec", "argv": []}}]},
            "subscriptions[1].handler.argv:",
        ),
        ({"subscriptions": [sub("a"), sub("a")]}, "subscription names must be unique: a"),
        ({"subscriptions": [sub("a", pattern="a.*")]}, "give exactly one of topic or pattern"),
        ({"subscriptions": [sub("a", filter="payload.[")]}, "invalid filter"),
        ({"subscriptions": [sub("a", topic="a b")]}, "invalid topic"),
        ({"events": {"store": {"retention": {"maxAge": "30 days"}}}}, "events.store.retention.maxAge:"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ("{not json", "invalid JSON"),
        ("[1]", "top level must be a JSON object"),
    ],
    ids=[
        "type",
        "empty-argv",
        "duplicate",
        "both-selectors",
        "filter",
        "topic",
        "max-age",
        "unknown",
        "json",
        "list",
    ],
)
def test_mistakes_name_their_json_path(tmp_path: Path, data: Any, expected: str) -> None:
    write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert any(expected in line for line in caught.value.details), caught.value.details


def test_publish_loops_are_refused_but_chains_are_fine(tmp_path: Path) -> None:
    def publisher(name: str, selector: str, target: str) -> dict[str, Any]:
        return {"name": name, "pattern": selector, "handler": {"type": "publish", "topic": target}}

    write(tmp_path, {"subscriptions": [publisher("ab", "a.#", "b.x"), publisher("bc", "b.#", "c.x")]})
    assert len(load(tmp_path).subscriptions) == 2
    write(tmp_path, {"subscriptions": [publisher("self", "a.#", "a.again")]})
    with pytest.raises(ConfigError, match="republishes into itself"):
        load(tmp_path)
    write(tmp_path, {"subscriptions": [publisher("ab", "a.#", "b.x"), publisher("ba", "b.#", "a.x")]})
    with pytest.raises(ConfigError, match="republishes into itself"):
        load(tmp_path)


def test_user_config_is_merged_under_the_project(tmp_path: Path) -> None:
    user = tmp_path / "user.json"
    user.write_text(
        json.dumps(
            {
                "events": {"webhooks": {"retry": {"maxAttempts": 7, "maxDelay": 5}}},
                "subscriptions": [sub("shared", topic="u.one"), sub("mine")],
            }
        )
    )
    write(tmp_path, {"events": {"webhooks": {"retry": {"maxAttempts": 2}}}, "subscriptions": [sub("shared")]})
    loaded = load(tmp_path, user)
    assert loaded.events.webhooks.retry.max_attempts == 2  # the project wins
    assert loaded.events.webhooks.retry.max_delay == 5  # the user's other keys stay
    assert {s.name: s.topic for s in loaded.subscriptions} == {"shared": "a.b", "mine": "a.b"}


def test_the_schema_describes_the_file() -> None:
    schema = config.schema()
    assert {"events", "subscriptions", "$schema"} <= set(schema["properties"])
    text = json.dumps(schema)
    assert "maxRetries" in text and "retryDelay" in text and "JMESPath" in text


def test_a_standard_secret_that_is_not_base64_is_refused(tmp_path: Path) -> None:
    endpoint = {"id": "e", "url": "http://127.0.0.1:9/x", "format": "standard", "secret": "whsec_not base64!"}
    write(tmp_path, {"events": {"webhooks": {"endpoints": [endpoint]}}})
    with pytest.raises(ConfigError, match="whsec_ followed by base64"):
        load(tmp_path)


def test_every_config_example_in_the_readme_is_valid(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme, re.S)]
    configs = [e for e in examples if {"subscriptions", "events", "redaction", "limits"} & set(e)]
    assert len(configs) >= 3
    for example in configs:
        write(tmp_path, example)
        load(tmp_path)
