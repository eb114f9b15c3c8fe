"""What a subscription does with an event: run a program, append to a file, republish.

Each call is one attempt: it succeeds or raises HandlerError; retries, timeouts between
attempts and dead letters are dispatch's business. An `exec` handler runs without a
shell, in its own process group (killed whole at the timeout), with the event JSON on
stdin and `ELSABRO_EVENT_ID`, `ELSABRO_TOPIC`, `ELSABRO_PROJECT`, `ELSABRO_SUBSCRIPTION`,
`ELSABRO_ATTEMPT` and `ELSABRO_REPLAY` in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elsabro.config.schema import AppendHandler, ExecHandler, Handler, PublishHandler, WebhookHandler
from elsabro.core import durable
from elsabro.core.errors import HandlerError
from elsabro.core.model import Event
from elsabro.core.redact import scrub
from elsabro.delivery import webhooks
from elsabro.delivery.context import ProjectContext

# How much of a failing program's stderr is kept as the error's detail.
_STDERR_BYTES = 4096


@dataclass(frozen=True)
class Delivery:
    """One attempt to hand one stored event to one subscription."""

    record: dict[str, Any]
    subscription: str
    attempt: int = 1
    replay: bool = False


async def run(handler: Handler, delivery: Delivery, project: ProjectContext, timeout_s: float) -> None:
    """One attempt; raises HandlerError on failure or when `timeout_s` runs out."""
    if isinstance(handler, ExecHandler):
        await _exec(handler, delivery, project.path, timeout_s)
        return
    try:
        await asyncio.wait_for(_other(handler, delivery, project), timeout_s)
    except asyncio.TimeoutError:
        raise HandlerError(f"timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise HandlerError(f"{type(handler).__name__}: {exc}") from None


async def _other(handler: Handler, delivery: Delivery, project: ProjectContext) -> None:
    if isinstance(handler, AppendHandler):
        await asyncio.to_thread(_append, project.path, handler.path, delivery.record)
    elif isinstance(handler, PublishHandler):
        await project.log.append([derived(handler.topic, delivery)])
    elif isinstance(handler, WebhookHandler):
        config = project.config.events.webhooks
        endpoint = config.endpoint(handler.endpoint)
        if endpoint is None:
            raise HandlerError(f"no webhook endpoint {handler.endpoint!r}")
        client = project.clients.get()
        record, attempt = delivery.record, delivery.attempt
        outcome = await webhooks.send(
            client, project.path, endpoint, config, record, attempt, replay=delivery.replay
        )
        if not outcome.ok:
            raise HandlerError(f"webhook {endpoint.id}: {outcome.error}")


def derived(topic: str, delivery: Delivery) -> Event:
    """The republished event: same payload and session, caused by the original."""
    record = delivery.record
    return Event.new(
        topic,
        record.get("payload"),
        source=record.get("source"),
        correlation_id=record.get("correlationId"),
        causation_id=record["id"],
        metadata={"republishedFrom": record["topic"], "subscription": delivery.subscription},
    )


def inside(project: Path, relative: str, what: str) -> Path:
    """`relative` under the project, its directories resolved, or HandlerError if that leaves the
    project: a `..`, an absolute path, or a symbolic link that points out (planted any time)."""
    root = os.path.realpath(project)
    target = os.path.join(root, relative)
    parent = os.path.realpath(os.path.dirname(target))
    if os.path.commonpath([root, parent]) != root:
        raise HandlerError(f"{what} {relative!r} leads outside the project ({parent}): refused")
    return Path(parent) / os.path.basename(target)


def _append(project: Path, relative: str, record: dict[str, Any]) -> None:
    path = inside(project, relative, "append path")
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    try:
        durable.append(path, line, follow_symlinks=False)  # a final symlink could point anywhere
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HandlerError(f"append path {relative!r} is a symbolic link: refused") from None
        raise


async def _exec(handler: ExecHandler, delivery: Delivery, project: Path, timeout_s: float) -> None:
    record = delivery.record
    env = {
        **os.environ,
        **handler.env,
        "ELSABRO_EVENT_ID": record["id"],
        "ELSABRO_TOPIC": record["topic"],
        "ELSABRO_PROJECT": str(project),
        "ELSABRO_SUBSCRIPTION": delivery.subscription,
        "ELSABRO_ATTEMPT": str(delivery.attempt),
        "ELSABRO_REPLAY": "1" if delivery.replay else "0",
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *handler.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=_cwd(project, handler.cwd),
            env=env,
            start_new_session=True,  # its own process group, killed whole at the timeout
        )
    except OSError as exc:
        raise HandlerError(f"cannot run {handler.argv[0]}: {exc.strerror or exc}") from None
    body = json.dumps(record, ensure_ascii=False).encode()
    try:
        _, stderr = await asyncio.wait_for(process.communicate(body), timeout_s)
    except asyncio.TimeoutError:
        await _kill(process)
        raise HandlerError(f"timed out after {timeout_s:g} s; killed") from None
    except asyncio.CancelledError:  # the subscription was removed or the daemon stops
        await _kill(process)
        raise
    if process.returncode != 0:
        # A handler may print what it was given; its output is redacted before it goes anywhere.
        detail = scrub(stderr[-_STDERR_BYTES:].decode("utf-8", "replace").strip())
        last = detail.splitlines()[-1] if detail else ""
        raise HandlerError(f"exit {process.returncode}" + (f": {last}" if last else ""), detail)


def _cwd(project: Path, cwd: str | None) -> Path:
    if not cwd:
        return project
    root = os.path.realpath(project)
    resolved = os.path.realpath(os.path.join(root, cwd))  # every part: a symlink out is refused too
    if os.path.commonpath([root, resolved]) != root:
        raise HandlerError(f"exec cwd {cwd!r} leads outside the project ({resolved}): refused")
    return Path(resolved)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the handler's whole process group: children it started must not linger."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
