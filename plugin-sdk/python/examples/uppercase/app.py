"""`uppercase`: a map that upper-cases the ASCII letters of each value.

Keys, key presence, timestamps and headers pass through unchanged. It works
on the whole batch at once: `bytes.upper()` converts the values buffer in one
C call (ASCII letters only, like Rust's `make_ascii_uppercase`), and record
boundaries do not move, so every other buffer is handed back as it came.
"""

import sluice_sdk as sluice


class Uppercase(sluice.Operator):
    def __init__(self, config: sluice.Config):
        config.allow_only()

    def process_batch(self, batch: sluice.Batch, out: sluice.Output):
        return batch.replace(values=batch.values.upper())

    # The per-record equivalent, for comparison (and used by the tests).
    def process(self, record: sluice.Record, out: sluice.Output):
        out.forward(record, record.value.upper())


# The component's export (componentize-py looks it up by this name).
Transformer = sluice.export(Uppercase)
