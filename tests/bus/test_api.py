"""The public Python API: its names, and the README's examples, run as written."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import elsabro
from support import REPO, World, stop_any_daemon


def test_all_lists_exactly_the_public_names() -> None:
    assert elsabro.__all__ == [
        "BadRequest",
        "DaemonNotRunning",
        "ElsabroError",
        "Event",
        "EventBus",
        "EventTimeout",
        "HandlerError",
        "LogInUse",
        "Settings",
        "StoredEvent",
        "SubscribeOptions",
        "Subscription",
        "UsageError",
        "__version__",
    ]
    for name in elsabro.__all__:
        assert getattr(elsabro, name) is not None
    assert issubclass(elsabro.EventTimeout, elsabro.ElsabroError)
    assert issubclass(elsabro.EventTimeout, TimeoutError)
    assert (Path(elsabro.__file__).parent / "py.typed").exists()
    with pytest.raises(AttributeError):
        elsabro.NotAName  # noqa: B018


def test_importing_elsabro_does_not_load_the_bus() -> None:
    """The CLI imports the package on every call: the bus (and httpx) load on first use only."""
    code = "import sys, elsabro; print('elsabro.bus.api' in sys.modules, 'httpx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_every_public_method_has_a_usage_example() -> None:
    for cls in (elsabro.EventBus, elsabro.Subscription):
        for name in dir(cls):
            member = getattr(cls, name)
            if not name.startswith("_") and callable(member):
                assert ">>>" in (inspect.getdoc(member) or ""), f"{cls.__name__}.{name} has no example"


def python_examples() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using elsabro from Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("number", range(3))
def test_readme_python_examples_run(world: World, number: int) -> None:
    examples = python_examples()
    assert len(examples) == 3
    script = world.root / f"example{number}.py"
    script.write_text(examples[number])
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=world.project,
            env=world.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_any_daemon(world.root)
    assert result.returncode == 0, result.stderr
    expected = [
        ["build 7 ok", "stored as number 1", "1 build.done {'id': 7, 'ok': True}"],
        ["big file: 2", "indexed [0, 1, 2]"],
        ["no second escalation"],
    ][number]
    assert sorted(result.stdout.splitlines()) == sorted(expected)
