"""Errors an operator raises; the SDK turns them into the contract's `error`."""

from typing import List, NamedTuple


class RecordError(NamedTuple):
    """Why one input record was rejected: its index in the input and a reason."""

    index: int
    reason: str


class OperatorError(Exception):
    """Base class of the errors the host sees."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadConfig(OperatorError):
    """The settings are unusable (a missing or unknown key, a value that does
    not parse): the job does not start."""

    def __str__(self) -> str:
        return f"bad configuration: {self.message}"


class Failed(OperatorError):
    """The operator failed as a whole: the job stops with this message."""

    def __str__(self) -> str:
        return f"operator failed: {self.message}"


class BadRecords(OperatorError):
    """These input records cannot be processed; `records` holds a
    `RecordError` per rejected record. Prefer `Output.reject` or raising
    `Reject` from `Operator.process`, which build this error for you."""

    def __init__(self, records: List[RecordError]):
        self.records = [RecordError(int(i), str(r)) for i, r in records]
        first = self.records[0] if self.records else None
        text = f"{len(self.records)} bad record(s)"
        if first is not None:
            text += f", first at index {first.index}: {first.reason}"
        super().__init__(text)

    def __str__(self) -> str:
        return self.message


class Reject(Exception):
    """Raise from `Operator.process` to reject the record being processed:
    it goes to the job's dead-letter file with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
