"""Write Sluice stream operators in Python.

An operator is a class; the app module exports it for componentize-py:

    import sluice_sdk as sluice

    class Shout(sluice.Operator):
        def __init__(self, config):
            config.allow_only("word")
            self.word = config.require("word").encode()

        def process(self, record, out):
            if self.word in record.value:
                out.forward(record, record.value.upper())

    Transformer = sluice.export(Shout)

The host calls the component once per micro-batch, never once per record.
"""

from ._export import export, export_reducer, export_stateful
from ._operator import Operator, StatefulOperator
from ._text import debug_str, lossy
from .batch import Batch, Header, Headers, Output, Record
from .config import Config
from .errors import BadConfig, BadRecords, Failed, OperatorError, RecordError, Reject
from ._log import Level, log
from .reduce import Accumulators, Group, Groups, Reducer, reduce_all

__version__ = "0.2.0"

__all__ = [
    "Accumulators", "BadConfig", "BadRecords", "Batch", "Config", "Failed", "Group", "Groups",
    "Header", "Headers", "Level", "Operator", "OperatorError", "Output", "Record", "RecordError",
    "Reducer", "Reject", "StatefulOperator", "debug_str", "export", "export_reducer",
    "export_stateful", "log", "lossy", "reduce_all",
]
