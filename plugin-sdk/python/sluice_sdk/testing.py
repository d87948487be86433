"""Run an operator or a reducer natively, in a plain unit test, as the host
would call it through Wasm (same layout, same error handling)."""

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _log
from ._export import run
from ._text import lossy
from .batch import Batch
from .config import Config
from .errors import BadRecords, Failed, RecordError
from .reduce import Groups, reduce_all

Settings = Union[Mapping[str, str], Iterable[Tuple[str, str]]]


class Harness:
    """An operator instance: `Harness(MyOperator, {"prefix": "* "})`.
    Raises `BadConfig` as the host's `init` would."""

    def __init__(self, cls: type, config: Settings = ()):
        self.operator = cls(Config(config))

    def run(self, batch: Batch) -> Batch:
        """One `process` call: the output batch, or `BadRecords`/`Failed`."""
        out = run(self.operator, batch)
        out.validate()
        return out

    def run_lines(self, lines: Sequence[Union[str, bytes]]) -> List[str]:
        """Runs unkeyed records with these values (timestamp 0) and returns
        the output values as text."""
        return [lossy(r.value) for r in self.run(Batch.from_values(lines, 0))]

    def snapshot(self) -> bytes:
        return bytes(self.operator.snapshot())

    def restore(self, state: bytes) -> None:
        self.operator.restore(bytes(state))


class ReducerHarness:
    """A reducer with the host's side of the contract: it groups records by
    key (in first-seen order) and keeps every key's accumulator."""

    def __init__(self, cls: type, config: Settings = ()):
        self.reducer = cls(Config(config))
        self.state: Dict[bytes, bytes] = {}

    def run(self, records: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """One `reduce` call over (key, value) records; returns (key, new
        accumulator) per distinct key. `BadRecords` indices are positions in
        `records`; the accumulators stay as they were then."""
        keys: Dict[str, List[int]] = {}
        for i, (k, _) in enumerate(records):
            keys.setdefault(k, []).append(i)
        origin: List[int] = []
        spec = []
        for k, positions in keys.items():
            kb = k.encode()
            spec.append((kb, self.state.get(kb), [records[p][1] for p in positions]))
            origin.extend(positions)
        try:
            out = reduce_all(self.reducer, Groups.of(spec))
        except BadRecords as e:
            raise BadRecords([RecordError(origin[r.index] if r.index < len(origin) else r.index,
                                          r.reason) for r in e.records]) from None
        if len(out.ends) != len(keys):
            raise Failed(f"the reducer returned {len(out.ends)} accumulator(s) for {len(keys)} key(s)")
        result = []
        for k, key in enumerate(keys):
            acc = out.get(k)
            self.state[key.encode()] = acc
            result.append((key, lossy(acc)))
        return result

    def accumulator(self, key: str) -> Optional[str]:
        acc = self.state.get(key.encode())
        return None if acc is None else lossy(acc)


def take_log() -> List[Tuple[_log.Level, str]]:
    """The lines logged natively since the last call, as (Level, message)."""
    lines = list(_log._captured)
    _log._captured.clear()
    return lines
