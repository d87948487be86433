"""Micro-batches: the columnar buffers of the contract, per-record views over
them (`Record`) and the output builder (`Output`)."""

from itertools import accumulate, repeat
from operator import is_not
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import BadRecords, RecordError

_new = tuple.__new__


class Header(NamedTuple):
    """One record header: `key` bytes (UTF-8 text, as Kafka's) and `value`
    bytes, or None for a null value."""

    key: bytes
    value: Optional[bytes]


class Record(NamedTuple):
    """One input record, a view of the batch: `key` is None when the record
    has no key (an empty key is b""). `value`, `key` and header parts are
    bytes slices of the batch's buffers."""

    index: int
    key: Optional[bytes]
    value: bytes
    timestamp: int
    headers: Tuple[Header, ...] = ()

    def header(self, key: Union[str, bytes], default=None) -> Optional[bytes]:
        """The value of the last header named `key` (None for a null value),
        or `default` when there is none."""
        if isinstance(key, str):
            key = key.encode()
        for h in reversed(self.headers):
            if h.key == key:
                return h.value
        return default


class Headers:
    """The headers of a batch's records in columnar layout (the contract's
    `record-headers`). Most operators use `Record.headers` instead."""

    __slots__ = ("ends", "keys", "key_ends", "values", "value_ends", "value_present")

    def __init__(self, ends, keys, key_ends, values, value_ends, value_present=b""):
        self.ends, self.keys, self.key_ends = ends, keys, key_ends
        self.values, self.value_ends, self.value_present = values, value_ends, value_present

    def per_record(self) -> List[Tuple[Header, ...]]:
        """Each record's headers, as a tuple of `Header`."""
        ks = _slices(self.keys, self.key_ends)
        vs = _slices(self.values, self.value_ends)
        if self.value_present:
            vs = [v if p else None for v, p in zip(vs, self.value_present)]
        entries = list(map(Header._make, zip(ks, vs)))
        return [tuple(entries[s:e]) for s, e in zip(_starts(self.ends), self.ends)]

    def __eq__(self, other):
        return isinstance(other, Headers) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self):
        return "Headers(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__) + ")"


def _starts(ends: Sequence[int]) -> List[int]:
    return [0, *ends[:-1]] if ends else []


def _slices(buf: bytes, ends: Sequence[int]) -> List[bytes]:
    # One C-level pass: buf[start:end] for every span.
    return list(map(buf.__getitem__, map(slice, _starts(ends), ends)))


class Batch:
    """A micro-batch in the contract's columnar layout (see `wit/operator.wit`).

    Iterate it for `Record`s; operators that want speed work on the buffers
    directly and return `batch.replace(values=...)` from `process_batch`."""

    __slots__ = ("keys", "key_ends", "key_present", "values", "value_ends", "timestamps", "headers")

    def __init__(self, keys: bytes = b"", key_ends: Sequence[int] = (), key_present: bytes = b"",
                 values: bytes = b"", value_ends: Sequence[int] = (),
                 timestamps: Sequence[int] = (), headers: Optional[Headers] = None):
        self.keys, self.key_ends, self.key_present = keys, key_ends, key_present
        self.values, self.value_ends, self.timestamps = values, value_ends, timestamps
        self.headers = headers

    @classmethod
    def from_values(cls, values: Iterable[Union[str, bytes]], timestamp: int = 0) -> "Batch":
        """Unkeyed records with these values (str is encoded as UTF-8)."""
        out = Output()
        for v in values:
            out.emit(v.encode() if isinstance(v, str) else v, timestamp=timestamp)
        return out.finish()

    @classmethod
    def from_records(cls, records: Iterable[tuple]) -> "Batch":
        """Records from (key, value, timestamp[, headers]) tuples; str is
        encoded as UTF-8, headers are (key, value-or-None) pairs."""
        out = Output()
        for r in records:
            key, value = (_b(r[0]), _b(r[1]))
            headers = [(_b(k), _b(v)) for k, v in r[3]] if len(r) > 3 else None
            out.emit(value, key=key, timestamp=r[2], headers=headers)
        return out.finish()

    def __len__(self) -> int:
        return len(self.value_ends)

    def __iter__(self) -> Iterator[Record]:
        n = len(self.value_ends)
        values = _slices(self.values, self.value_ends)
        if self.key_present:
            keys = [k if p else None for k, p in
                    zip(_slices(self.keys, self.key_ends), self.key_present)]
        else:
            keys = repeat(None, n)
        headers = self.headers.per_record() if self.headers is not None else repeat((), n)
        return map(Record._make, zip(range(n), keys, values, self.timestamps, headers))

    def __getitem__(self, i: int) -> Record:
        n = len(self.value_ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record index out of range")
        start = self.value_ends[i - 1] if i else 0
        key = None
        if self.key_present and self.key_present[i]:
            key = self.keys[(self.key_ends[i - 1] if i else 0):self.key_ends[i]]
        headers = ()
        if self.headers is not None:
            h = self.headers
            s, e = (h.ends[i - 1] if i else 0), h.ends[i]
            headers = tuple(self._header(h, j) for j in range(s, e))
        return Record(i, key, self.values[start:self.value_ends[i]], self.timestamps[i], headers)

    @staticmethod
    def _header(h: Headers, j: int) -> Header:
        key = h.keys[(h.key_ends[j - 1] if j else 0):h.key_ends[j]]
        value = None
        if not h.value_present or h.value_present[j]:
            value = h.values[(h.value_ends[j - 1] if j else 0):h.value_ends[j]]
        return Header(key, value)

    def replace(self, **fields) -> "Batch":
        """A copy with some buffers replaced, e.g. `batch.replace(values=new)`
        for a map that keeps record boundaries."""
        b = Batch(*(getattr(self, f) for f in self.__slots__))
        for name, value in fields.items():
            setattr(b, name, value)
        return b

    def validate(self) -> None:
        """Raises ValueError when the batch breaks the contract's layout rules
        (the host checks the same rules on every batch an operator returns)."""
        n = len(self.value_ends)
        if len(self.key_ends) != n or len(self.timestamps) != n:
            raise ValueError(f"{n} value-ends but {len(self.key_ends)} key-ends and "
                             f"{len(self.timestamps)} timestamps")
        if self.key_present and len(self.key_present) != n:
            raise ValueError(f"key-present has {len(self.key_present)} entries for {n} records")
        _check_ends("value-ends", self.value_ends, len(self.values))
        _check_ends("key-ends", self.key_ends, len(self.keys))
        if self.headers is not None:
            h = self.headers
            if len(h.ends) != n:
                raise ValueError(f"headers.ends has {len(h.ends)} entries for {n} records")
            _check_ends("headers.ends", h.ends, len(h.key_ends))
            _check_ends("headers.key-ends", h.key_ends, len(h.keys))
            _check_ends("headers.value-ends", h.value_ends, len(h.values))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"Batch({list(self)!r})"


def _check_ends(name: str, ends: Sequence[int], length: int) -> None:
    prev = 0
    for e in ends:
        if e < prev:
            raise ValueError(f"{name} decrease ({prev} then {e})")
        prev = e
    if prev != length:
        raise ValueError(f"{name} end at {prev} but the buffer has {length} bytes")


def _b(x) -> Optional[bytes]:
    return x.encode() if isinstance(x, str) else x


class Output:
    """Where an operator writes its output records and its rejections.

    Output records keep the order of the `emit`/`forward` calls. The buffers
    are joined once, when the batch is handed back to the host."""

    __slots__ = ("_values", "_keys", "_ts", "_headers", "_rejected")

    def __init__(self):
        self._values: List[bytes] = []
        self._keys: List[Optional[bytes]] = []
        self._ts: List[int] = []
        self._headers: Optional[list] = None  # created by the first record with headers
        self._rejected: List[RecordError] = []

    def __len__(self) -> int:
        return len(self._values)

    def emit(self, value: bytes, *, key: Optional[bytes] = None, timestamp: int,
             headers: Optional[Iterable[Tuple[bytes, Optional[bytes]]]] = None) -> None:
        """Appends a record. `key=None` means no key; `headers` are
        (key, value-or-None) pairs."""
        self._values.append(value)
        self._keys.append(key)
        self._ts.append(timestamp)
        if headers:
            self._add_headers(tuple(headers))
        elif self._headers is not None:
            self._headers.append(())

    def emit_many(self, values: Sequence[bytes], *, keys: Optional[Sequence[Optional[bytes]]] = None,
                  timestamp: int) -> None:
        """Appends a record per value, all with `timestamp`, keyed by the
        matching entry of `keys` (or unkeyed), without headers."""
        n = len(values)
        self._values.extend(values)
        self._keys.extend(repeat(None, n) if keys is None else keys)
        self._ts.extend(repeat(timestamp, n))
        if self._headers is not None:
            self._headers.extend(repeat((), n))

    def forward(self, record: Record, value: Optional[bytes] = None) -> None:
        """Appends `record` with its key, timestamp and headers, and `value`
        instead of its value when given."""
        self._values.append(record.value if value is None else value)
        self._keys.append(record.key)
        self._ts.append(record.timestamp)
        if record.headers:
            self._add_headers(record.headers)
        elif self._headers is not None:
            self._headers.append(())

    def _add_headers(self, headers: tuple) -> None:
        if self._headers is None:
            self._headers = [()] * (len(self._values) - 1)
        self._headers.append(headers)

    def reject(self, record: Union[Record, int], reason: str) -> None:
        """Rejects an input record (a `Record` or its index) with `reason`:
        the host sends it to the dead-letter file."""
        index = record if isinstance(record, int) else record.index
        self._rejected.append(RecordError(index, str(reason)))

    @property
    def rejected(self) -> List[RecordError]:
        """The rejections so far."""
        return list(self._rejected)

    def finish(self) -> Batch:
        """The output batch; raises `BadRecords` when records were rejected."""
        if self._rejected:
            raise BadRecords(self._rejected)
        values = self._values
        keys = self._keys
        n = len(values)
        value_bytes, values = _join(values)
        if any(map(is_not, keys, repeat(None))):
            present = bytes(map(is_not, keys, repeat(None)))
            key_bytes, keys = _join([b"" if k is None else k for k in keys])
            key_ends = list(accumulate(map(len, keys)))
        else:
            present, key_ends, key_bytes = b"", [0] * n, b""
        headers = None
        if self._headers is not None:
            headers = _columnar_headers(self._headers)
        return Batch(key_bytes, key_ends, present, value_bytes,
                     list(accumulate(map(len, values))), list(self._ts), headers)


def _join(parts: list) -> tuple:
    """The parts joined, and the parts as bytes (str is UTF-8 encoded)."""
    try:
        return b"".join(parts), parts
    except TypeError:
        parts = [p.encode() if isinstance(p, str) else bytes(p) for p in parts]
        return b"".join(parts), parts


def _columnar_headers(per_record: List[tuple]) -> Headers:
    ends, keys, values, present = [], [], [], []
    for hs in per_record:
        for k, v in hs:
            keys.append(_b(k))
            values.append(b"" if v is None else _b(v))
            present.append(v is not None)
        ends.append(len(keys))
    value_present = b"" if all(present) else bytes(present)
    return Headers(ends, b"".join(keys), list(accumulate(map(len, keys))),
                   b"".join(values), list(accumulate(map(len, values))), value_present)
