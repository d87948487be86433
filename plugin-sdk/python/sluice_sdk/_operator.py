"""The operator base classes."""

from typing import Optional

from .batch import Batch, Output, Record
from .config import Config
from .errors import Reject


class Operator:
    """A stream operator: a map, flatMap, filter or key-by step.

    Subclass it and override `process` (one record at a time) or
    `process_batch` (the whole batch). One instance lives in each Wasm
    instance, and the host keeps one instance per partition, so `self` may
    hold caches and counters.

    `__init__(self, config)` reads the settings; raise `BadConfig` (or let
    `config.allow_only`, `config.require`, `config.bool`... raise it) to
    refuse them. The default refuses every setting."""

    def __init__(self, config: Config):
        config.allow_only()

    def process(self, record: Record, out: Output) -> None:
        """Handles one record: emit any number of records to `out`; raise
        `Reject(reason)` (or call `out.reject(record, reason)`) to reject it.
        Any other exception is a bug: as a panic in a Rust operator, it makes
        the component trap (its traceback goes to stderr, which the host logs),
        and the host sends the record to the dead-letter file and goes on."""
        raise NotImplementedError(f"{type(self).__name__} must override process or process_batch")

    def process_batch(self, batch: Batch, out: Output) -> Optional[Batch]:
        """Handles a whole batch. The default calls `process` for each
        record in order. Override it to work on the buffers directly; return
        a `Batch` to make it the whole output (e.g. `batch.replace(values=...)`),
        or None to output what was written to `out`."""
        process = self.process
        for record in batch:
            try:
                process(record, out)
            except Reject as r:
                out.reject(record.index, r.reason)
        return None


class StatefulOperator(Operator):
    """An `Operator` whose state must survive a hot swap to its next version
    (the `stateful-transform` world). The host calls `snapshot` on the
    running instance at a batch boundary and `restore` on the new version's
    fresh instance, after `__init__` and before its first batch."""

    def snapshot(self) -> bytes:
        """The state as bytes, in a format the next versions can read."""
        raise NotImplementedError

    def restore(self, state: bytes) -> None:
        """Takes over a snapshot of the previous version; raise (e.g.
        `Failed`) when it cannot be read, and the job keeps that version."""
        raise NotImplementedError
