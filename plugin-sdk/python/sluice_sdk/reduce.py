"""Keyed reducers (Spark's reduceByKey / updateStateByKey)."""

from itertools import accumulate
from typing import Iterable, List, NamedTuple, Optional, Sequence, Union

from .batch import _check_ends, _slices, _starts
from .config import Config
from .errors import BadRecords, Failed, RecordError


class Group:
    """One key of a `reduce` call: its `key`, its `accumulator` so far (None
    the first time the host sees the key) and its new `values` (bytes, in the
    order their records arrived; at least one)."""

    __slots__ = ("key", "accumulator", "values", "first", "_rejected")

    def __init__(self, key: bytes, accumulator: Optional[bytes], values: List[bytes],
                 first: int = 0, rejected: Optional[list] = None):
        self.key, self.accumulator, self.values = key, accumulator, values
        self.first = first  # index of values[0] in the call
        self._rejected = [] if rejected is None else rejected

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def reject(self, position: int, reason: str) -> None:
        """Rejects `values[position]` with `reason`. The SDK goes on with the
        other keys and reports every rejected value of the call at once; the
        host then keeps all accumulators as they were and calls again without
        the rejected values."""
        if not 0 <= position < len(self.values):
            raise IndexError(f"value position {position} out of range for {len(self.values)} value(s)")
        self._rejected.append(RecordError(self.first + position, str(reason)))

    def __repr__(self) -> str:
        return f"Group(key={self.key!r}, accumulator={self.accumulator!r}, values={self.values!r})"


class Reducer:
    """A keyed reducer. The host keeps every key's accumulator and groups
    each partition batch by key; the SDK calls `reduce` once per key.

    `__init__(self, config)` reads the settings (the default refuses all)."""

    def __init__(self, config: Config):
        config.allow_only()

    def reduce(self, group: Group) -> Union[bytes, str]:
        """Folds `group.values` into `group.accumulator` and returns the new
        accumulator (str is UTF-8 encoded). Reject values with
        `group.reject(position, reason)`; raise `Failed` to stop the job."""
        raise NotImplementedError


class Accumulators(NamedTuple):
    """The new accumulators of one call, one per key in key order."""

    data: bytes
    ends: List[int]

    def get(self, k: int) -> Optional[bytes]:
        if not 0 <= k < len(self.ends):
            return None
        return self.data[(self.ends[k - 1] if k else 0):self.ends[k]]


class Groups:
    """The argument of one `reduce` call in the contract's layout (the
    `groups` record of `wit/operator.wit`)."""

    __slots__ = ("keys", "key_ends", "accumulators", "accumulator_ends", "has_accumulator",
                 "values", "value_ends", "group_ends")

    def __init__(self, keys=b"", key_ends=(), accumulators=b"", accumulator_ends=(),
                 has_accumulator=b"", values=b"", value_ends=(), group_ends=()):
        self.keys, self.key_ends = keys, list(key_ends)
        self.accumulators, self.accumulator_ends = accumulators, list(accumulator_ends)
        self.has_accumulator, self.values = bytes(has_accumulator), values
        self.value_ends, self.group_ends = list(value_ends), list(group_ends)

    @classmethod
    def of(cls, groups: Iterable[tuple]) -> "Groups":
        """Groups from (key, accumulator-or-None, [values]) tuples (str is
        UTF-8 encoded)."""
        keys, accs, has, values, group_ends = [], [], [], [], []
        for key, acc, vals in groups:
            keys.append(_b(key))
            accs.append(b"" if acc is None else _b(acc))
            has.append(acc is not None)
            values.extend(_b(v) for v in vals)
            group_ends.append(len(values))
        return cls(b"".join(keys), accumulate(map(len, keys)), b"".join(accs),
                   accumulate(map(len, accs)), bytes(has), b"".join(values),
                   accumulate(map(len, values)), group_ends)

    def __len__(self) -> int:
        return len(self.key_ends)

    def validate(self) -> None:
        """Raises ValueError when the layout is malformed."""
        n = len(self.key_ends)
        for name, length in (("accumulator-ends", len(self.accumulator_ends)),
                             ("has-accumulator", len(self.has_accumulator)),
                             ("group-ends", len(self.group_ends))):
            if length != n:
                raise ValueError(f"{name} has {length} entries for {n} keys")
        _check_ends("key-ends", self.key_ends, len(self.keys))
        _check_ends("accumulator-ends", self.accumulator_ends, len(self.accumulators))
        _check_ends("value-ends", self.value_ends, len(self.values))
        _check_ends("group-ends", self.group_ends, len(self.value_ends))
        start = 0
        for k, end in enumerate(self.accumulator_ends):
            if not self.has_accumulator[k] and end != start:
                raise ValueError(f"key {k} has no accumulator but an accumulator span of "
                                 f"{end - start} byte(s)")
            start = end

    def groups(self, rejected: Optional[list] = None) -> List[Group]:
        """One `Group` per key, sharing the list that collects rejections."""
        rejected = [] if rejected is None else rejected
        keys = _slices(self.keys, self.key_ends)
        accs = _slices(self.accumulators, self.accumulator_ends)
        values = _slices(self.values, self.value_ends)
        return [Group(k, a if h else None, values[s:e], s, rejected)
                for k, a, h, s, e in zip(keys, accs, self.has_accumulator,
                                         _starts(self.group_ends), self.group_ends)]


def reduce_all(reducer: Reducer, groups: Groups) -> Accumulators:
    """Runs `reducer` over every key of one call, as the host's call does:
    rejections of all keys come back together as one `BadRecords`; any other
    error stops at the key that raised it."""
    try:
        groups.validate()
    except ValueError as e:
        raise Failed(f"the host sent malformed groups: {e}") from None
    rejected: List[RecordError] = []
    out: List[bytes] = []
    reduce = reducer.reduce
    for group in groups.groups(rejected):
        before = len(rejected)
        try:
            acc = reduce(group)
        except BadRecords as e:  # indices are positions in the call
            rejected.extend(e.records)
            continue
        if len(rejected) == before:
            if isinstance(acc, str):
                acc = acc.encode()
            elif acc is None:
                raise Failed(f"reduce returned None for key {group.key!r} (return the new accumulator)")
            out.append(bytes(acc))
    if rejected:
        raise BadRecords(rejected)
    return Accumulators(b"".join(out), list(accumulate(map(len, out))))


def _b(x) -> bytes:
    return x.encode() if isinstance(x, str) else bytes(x)
