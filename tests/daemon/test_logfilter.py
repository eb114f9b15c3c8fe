"""The daemon's log keeps one line per repeated error and window, with a count of the rest."""

from __future__ import annotations

import logging

from elsabro.daemon.logs import RepeatFilter


def records(logger: logging.Logger, stream: list[str], window_s: float) -> None:
    handler = logging.Handler()
    handler.emit = lambda record: stream.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RepeatFilter(window_s))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)


def test_a_storm_of_one_error_is_logged_once_with_a_count() -> None:
    logger = logging.getLogger("elsabro.test.storm")
    seen: list[str] = []
    records(logger, seen, window_s=3600)
    for _ in range(1000):
        logger.error("out of file descriptors: %s", "accept")
    logger.error("another error")
    logger.info("info is never held back")
    logger.info("info is never held back")
    assert seen == [
        "out of file descriptors: accept",
        "another error",
        "info is never held back",
        "info is never held back",
    ]


def test_after_the_window_the_next_one_says_how_many_were_held_back() -> None:
    logger = logging.getLogger("elsabro.test.window")
    seen: list[str] = []
    records(logger, seen, window_s=0.0)  # every repeat is past the window at once
    logger.warning("disk trouble")
    logger.warning("disk trouble")
    assert seen == ["disk trouble", "disk trouble"]
    held: list[str] = []
    records(logging.getLogger("elsabro.test.held"), held, window_s=3600)
    held_logger = logging.getLogger("elsabro.test.held")
    for _ in range(5):
        held_logger.error("same")
    handler = held_logger.handlers[0]
    repeat = handler.filters[0]
    assert isinstance(repeat, RepeatFilter)
    repeat.window_s = 0.0
    held_logger.error("same")
    assert held == ["same", "same (4 more like this since the last one)"]
