"""`running-count`: numbers the records of each key, across batches and
across versions of the operator.

For every input record it emits one record with the same key, timestamp and
headers, whose value is the number of records with that key seen so far,
this one included, in decimal ("1", "2", ...). Records without a key are
counted together, apart from records with an empty key. No settings.

Its counts are its state: when the job swaps in a new version, `snapshot`
hands them over (JSON: {"version": 1, "counts": [[key-as-hex-or-null, n], ...]})
and the new version's `restore` takes them, so the numbering goes on.
After `split-words` it gives each word's running count.
"""

import json

import sluice_sdk as sluice

NO_KEY = None  # the counter of the records without a key


class RunningCount(sluice.StatefulOperator):
    def __init__(self, config: sluice.Config):
        config.allow_only()
        self.counts = {}  # key (bytes, or None for no key) -> records seen

    def process(self, record: sluice.Record, out: sluice.Output):
        n = self.counts.get(record.key, 0) + 1
        self.counts[record.key] = n
        out.forward(record, b"%d" % n)

    def snapshot(self) -> bytes:
        counts = [[None if k is None else k.hex(), n] for k, n in self.counts.items()]
        return json.dumps({"version": 1, "counts": counts}).encode()

    def restore(self, state: bytes):
        try:
            doc = json.loads(state)
            if doc.get("version") != 1:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            counts = {}
            for key, n in doc["counts"]:
                if type(n) is not int or n < 0:
                    raise ValueError(f"bad count {n!r}")
                counts[None if key is None else bytes.fromhex(key)] = n
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise sluice.Failed(f"not a running-count snapshot: {e}") from None
        self.counts = counts


Transformer, Stateful = sluice.export_stateful(RunningCount)
