"""The one module that touches the bindings componentize-py generates from
`wit/operator.wit` (`wit_world`, `componentize_py_types`). Imported only
inside the component."""

from componentize_py_types import Err
from wit_world.imports import host, types

from .batch import Batch, Headers
from .errors import BadConfig, BadRecords, Failed, OperatorError

_LEVELS = (host.Level.TRACE, host.Level.DEBUG, host.Level.INFO, host.Level.WARN, host.Level.ERROR)


def host_log(level, message: str) -> None:
    host.log(_LEVELS[level], message)


def from_batch(b) -> Batch:
    h = b.headers
    headers = None if h is None else Headers(h.ends, h.keys, h.key_ends, h.values,
                                             h.value_ends, h.value_present)
    return Batch(b.keys, b.key_ends, b.key_present, b.values, b.value_ends, b.timestamps, headers)


def _list(x) -> list:
    return x if type(x) is list else list(x)


def _bytes(x) -> bytes:
    return x if type(x) is bytes else bytes(x)


def to_batch(b: Batch):
    h = b.headers
    headers = None
    if h is not None:
        headers = types.RecordHeaders(_list(h.ends), _bytes(h.keys), _list(h.key_ends),
                                      _bytes(h.values), _list(h.value_ends),
                                      _bytes(h.value_present))
    return types.Batch(_bytes(b.keys), _list(b.key_ends), _bytes(b.key_present),
                       _bytes(b.values), _list(b.value_ends), _list(b.timestamps), headers)


def to_accumulators(a):
    from wit_world.exports.reducer import Accumulators
    return Accumulators(_bytes(a.data), _list(a.ends))


def fail(e: BaseException):
    """Raises the contract's error for an error the SDK defines (`BadConfig`,
    `BadRecords`, `Failed`); traps for any other exception, as a panic does
    in Rust (see `_export.trap`)."""
    from ._export import trap
    if isinstance(e, BadRecords):
        raise Err(types.Error_BadRecords([types.RecordError(r.index, r.reason) for r in e.records]))
    if isinstance(e, BadConfig):
        raise Err(types.Error_BadConfig(e.message))
    if isinstance(e, OperatorError):
        raise Err(types.Error_Failed(e.message))
    trap(e)
