"""Operator settings: the `config` table of the operator in the job file."""

import re
from typing import Callable, Iterable, Iterator, Mapping, Optional, Tuple, TypeVar, Union

from ._text import debug_str
from .errors import BadConfig

T = TypeVar("T")
_MISSING = object()
_INT = re.compile(r"[+-]?[0-9]+\Z")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class Config(Mapping[str, str]):
    """The settings as key/value strings (nested TOML values arrive as TOML
    text). A read-only mapping; when a key is given twice, the first wins.

    Every error it raises is a `BadConfig` whose message names the key."""

    def __init__(self, entries: Union[Iterable[Tuple[str, str]], Mapping[str, str]] = ()):
        if isinstance(entries, Mapping):
            entries = entries.items()
        self._entries = [(str(k), str(v)) for k, v in entries]
        self._first = {}
        for k, v in self._entries:
            self._first.setdefault(k, v)

    # Mapping protocol
    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"Config({self._entries!r})"

    def entries(self) -> list:
        """All (key, value) pairs in the order given."""
        return list(self._entries)

    def require(self, key: str) -> str:
        """The value of `key`; `BadConfig` when it is not set."""
        value = self._first.get(key)
        if value is None:
            raise BadConfig(f"missing required setting `{key}`")
        return value

    def parse(self, key: str, convert: Callable[[str], T], default=None):
        """`convert(value)` when `key` is set, else `default`. An exception from
        `convert` becomes `BadConfig`: setting `key` = "value" is not valid: <its message>."""
        value = self._first.get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except BadConfig:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad setting
            raise BadConfig(f"setting `{key}` = {debug_str(value)} is not valid: {e}") from None

    def bool(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        """`true` or `false` (exactly), else `BadConfig`."""
        return self.parse(key, _parse_bool, default)

    def int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """A signed 64-bit decimal integer (an optional sign, then ASCII digits)."""
        return self.parse(key, _parse_i64, default)

    def allow_only(self, *known: str) -> None:
        """Refuses any key not in `known`, naming the accepted ones."""
        for k, _ in self._entries:
            if k not in known:
                accepted = ("this operator takes no settings" if not known
                            else "accepted: " + ", ".join(known))
                raise BadConfig(f"unknown setting `{k}` ({accepted})")


def _parse_bool(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError("provided string was not `true` or `false`")


def _parse_i64(text: str) -> int:
    if not text:
        raise ValueError("cannot parse integer from empty string")
    if not _INT.match(text):
        raise ValueError("invalid digit found in string")
    n = int(text)
    if n > _I64_MAX:
        raise ValueError("number too large to fit in target type")
    if n < _I64_MIN:
        raise ValueError("number too small to fit in target type")
    return n
