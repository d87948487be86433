"""Logging through the host: `log.info("...")` writes a line to the host log,
tagged with the job, operator and worker. In native unit tests the lines are
kept for `sluice_sdk.testing.take_log()`."""

from enum import IntEnum
from typing import Callable, List, Tuple


class Level(IntEnum):
    """Severity of a log line."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


_captured: List[Tuple[Level, str]] = []


def _capture(level: Level, message: str) -> None:
    _captured.append((level, message))


class Log:
    """The host log. Call it as `log(Level.INFO, msg)` or `log.info(msg)`."""

    def __init__(self):
        self._sink: Callable[[Level, str], None] = _capture

    def __call__(self, level: Level, message: str) -> None:
        self._sink(Level(level), str(message))

    def trace(self, message: str) -> None:
        self._sink(Level.TRACE, str(message))

    def debug(self, message: str) -> None:
        self._sink(Level.DEBUG, str(message))

    def info(self, message: str) -> None:
        self._sink(Level.INFO, str(message))

    def warn(self, message: str) -> None:
        self._sink(Level.WARN, str(message))

    warning = warn

    def error(self, message: str) -> None:
        self._sink(Level.ERROR, str(message))


log = Log()
