"""Wiring an operator class to the component's exports.

componentize-py looks the exports up by name in the app module:
`Transformer` (and `Stateful`) or `Reducer`. These functions build those
classes. Nothing here imports the generated bindings: `_wit` does, and it
is imported only inside the component (where `sys.platform` is "wasi"), so
an operator module imports and tests natively."""

import os
import sys
import traceback
from typing import NoReturn, Tuple, Type

from .batch import Batch, Output
from .config import Config
from .errors import BadRecords, Failed
from ._log import log
from .reduce import Groups, Reducer, reduce_all

_wit = None
if sys.platform == "wasi":  # inside the component: load the bindings at build (pre-init) time
    from . import _wit  # noqa: F811


def run(op, batch: Batch) -> Batch:
    """One `process` call: the operator's `process_batch` plus rejections,
    turned into the output batch or `BadRecords` (the native harness uses it too)."""
    out = Output()
    result = op.process_batch(batch, out)
    if out._rejected:
        raise BadRecords(out._rejected)
    if result is None:
        return out.finish()
    if len(out):
        raise Failed("process_batch returned a batch and also emitted records to `out`; do one or the other")
    if not isinstance(result, Batch):
        raise Failed(f"process_batch returned {type(result).__name__}, not a Batch or None")
    return result


def describe(e: BaseException) -> str:
    """`e` in one line: its type, its message and where it was raised, e.g.
    `KeyError: 'id' (at app.py:12 in process)`."""
    where = ""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        code = tb.tb_frame.f_code
        where = f" (at {code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name})"
    text = str(e)
    return f"{type(e).__name__}: {text}{where}" if text else f"{type(e).__name__}{where}"


_abort = getattr(os, "abort", None)  # replaced in the SDK's own tests


def trap(e: BaseException) -> NoReturn:
    """Ends the call with a Wasm trap for `e`, an exception the operator did
    not mean to raise (a bug), as a panic does in a Rust operator: the host
    then isolates the record that raises it, writes it to the dead-letter
    file, re-creates the instance and goes on (a `Failed` would stop the
    job). The traceback goes to stderr first, which the host logs; its last
    line, the exception and where it was raised, is the reason the host
    gives for the trap."""
    try:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        sys.stderr.write(f"uncaught {describe(e)}\n")
        sys.stderr.flush()
    finally:
        if _abort is not None:
            _abort()  # wasi-libc's abort() is a wasm `unreachable`
    # Without abort(), an exception that is not `Err` makes componentize-py
    # trap too (with a message of its own as the reason).
    raise e


class _Slot:
    """The operator of this instance, created by `init`."""

    def __init__(self, cls: type, what: str):
        self.cls, self.what, self.op = cls, what, None
        if _wit is not None:
            log._sink = _wit.host_log

    def init(self, config) -> None:
        # Unexpected exceptions trap here too, as a panic in a Rust `init`
        # does; `BadConfig` (and `Failed`) are the contract's errors.
        try:
            self.op = self.cls(Config(config))
        except BaseException as e:  # noqa: BLE001
            _wit.fail(e)

    def get(self, call: str):
        if self.op is None:
            _wit.fail(Failed(f"{call} called before init"))
        return self.op


def export(cls: Type) -> type:
    """The `Transformer` export for an `Operator` class (the `transform`
    world). Use it once, at the end of the app module:

        Transformer = sluice.export(MyOperator)
    """
    slot = _Slot(cls, "operator")

    class Transformer:
        def init(self, config):
            slot.init(config)

        def process(self, input):
            op = slot.get("process")
            try:
                return _wit.to_batch(run(op, _wit.from_batch(input)))
            except BaseException as e:  # noqa: BLE001
                _wit.fail(e)

    Transformer._slot = slot
    return Transformer


def export_stateful(cls: Type) -> Tuple[type, type]:
    """The `Transformer` and `Stateful` exports for a `StatefulOperator`
    class (the `stateful-transform` world):

        Transformer, Stateful = sluice.export_stateful(MyOperator)
    """
    Transformer = export(cls)
    slot = Transformer._slot

    class Stateful:
        def snapshot(self):
            op = slot.get("snapshot")
            try:
                state = op.snapshot()
                return state.encode() if isinstance(state, str) else bytes(state)
            except BaseException as e:  # noqa: BLE001
                _wit.fail(e)

        def restore(self, state):
            op = slot.get("restore")
            try:
                op.restore(bytes(state))
            except BaseException as e:  # noqa: BLE001
                _wit.fail(e)

    return Transformer, Stateful


def export_reducer(cls: Type[Reducer]) -> type:
    """The `Reducer` export for a `Reducer` class (the `reduce` world):

        Reducer = sluice.export_reducer(MyReducer)
    """
    slot = _Slot(cls, "reducer")

    class ReducerExport:
        def init(self, config):
            slot.init(config)

        def reduce(self, input):
            op = slot.get("reduce")
            try:
                g = Groups(input.keys, input.key_ends, input.accumulators, input.accumulator_ends,
                           input.has_accumulator, input.values, input.value_ends, input.group_ends)
                return _wit.to_accumulators(reduce_all(op, g))
            except BaseException as e:  # noqa: BLE001
                _wit.fail(e)

    ReducerExport.__name__ = ReducerExport.__qualname__ = "Reducer"
    return ReducerExport
