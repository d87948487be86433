"""`{{NAME}}`: a Sluice operator.

Prefixes every value with a configurable text and rejects empty values.
Settings (the `config` table of the operator in a job file):

- `prefix` (default `"> "`): text put in front of each value.

Build it with `sluice plugin build`, try it with `sluice plugin test`.
"""

import sluice_sdk as sluice
from sluice_sdk import log


class Prefixer(sluice.Operator):
    """One instance lives in each Wasm instance; the host keeps one instance
    per partition, so `self` may hold state between batches."""

    def __init__(self, config: sluice.Config):
        # Reads the settings; refusing them stops the job before it starts.
        config.allow_only("prefix")
        prefix = config.get("prefix", "> ")
        log.info(f"prefixing values with {sluice.debug_str(prefix)}")
        self.prefix = prefix.encode()

    def process(self, record: sluice.Record, out: sluice.Output):
        # Called for each record of a batch. Emit any number of records to
        # `out`; raise `sluice.Reject(reason)` to reject the record (it goes
        # to the job's dead-letter file with the reason).
        if not record.value:
            raise sluice.Reject("empty value")
        out.emit(self.prefix + record.value, key=record.key, timestamp=record.timestamp)


# The component's export (componentize-py looks it up by this name).
Transformer = sluice.export(Prefixer)
