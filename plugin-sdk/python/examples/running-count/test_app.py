import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import Harness

from app import RunningCount


def batch(*records):
    return sluice.Batch.from_records(records)


class RunningCountTest(unittest.TestCase):
    def test_counts_per_key_across_batches(self):
        h = Harness(RunningCount)
        out = h.run(batch(("a", "x", 1), ("b", "y", 2), ("a", "z", 3), (None, "w", 4), ("", "v", 5)))
        self.assertEqual([(r.key, r.value, r.timestamp) for r in out],
                         [(b"a", b"1", 1), (b"b", b"1", 2), (b"a", b"2", 3), (None, b"1", 4),
                          (b"", b"1", 5)])
        out = h.run(batch(("a", "x", 6), (None, "w", 7)))
        self.assertEqual([r.value for r in out], [b"3", b"2"])

    def test_keeps_headers(self):
        out = Harness(RunningCount).run(batch(("k", "v", 1, [("trace", "t")])))
        self.assertEqual(out[0].headers, ((b"trace", b"t"),))

    def test_state_moves_to_the_next_version(self):
        old = Harness(RunningCount)
        old.run(batch(("a", "x", 1), ("a", "x", 1), (None, "x", 1), ("\xff", "x", 1)))
        new = Harness(RunningCount)
        new.restore(old.snapshot())
        out = new.run(batch(("a", "x", 2), (None, "x", 2), ("\xff", "x", 2), ("b", "x", 2)))
        self.assertEqual([r.value for r in out], [b"3", b"2", b"2", b"1"])

    def test_refuses_a_foreign_snapshot(self):
        h = Harness(RunningCount)
        for state in [b"", b"7\nlineage", b'{"version": 2}', b'{"version": 1, "counts": [["zz", 1]]}']:
            with self.assertRaises(sluice.Failed) as e:
                h.restore(state)
            self.assertIn("not a running-count snapshot", e.exception.message)


if __name__ == "__main__":
    unittest.main()
