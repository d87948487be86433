import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import Harness

from app import Uppercase


class UppercaseTest(unittest.TestCase):
    def test_uppercases_values_and_keeps_keys(self):
        h = Harness(Uppercase)
        out = list(h.run(sluice.Batch.from_records([("k", "hello, World 1", 7),
                                                     (None, "ünïcode ok", 8)])))
        self.assertEqual(out[0].key, b"k")
        self.assertEqual(out[0].value, b"HELLO, WORLD 1")
        self.assertEqual(out[0].timestamp, 7)
        self.assertIsNone(out[1].key)
        self.assertEqual(out[1].value, "üNïCODE OK".encode())

    def test_batch_and_record_paths_agree(self):
        batch = sluice.Batch.from_records([
            (None, "abc", 3), (None, "", 3), (None, "Mixed Case", 3),
            ("k", "with headers", 4, [("trace", "t-1"), ("trace", None)]),
            (None, "after", 5)])
        h = Harness(Uppercase)
        fast = h.run(batch)
        slow = sluice.Output()
        for r in batch:
            h.operator.process(r, slow)
        self.assertEqual(fast, slow.finish())
        self.assertEqual(fast[3].headers, ((b"trace", b"t-1"), (b"trace", None)))
        self.assertEqual(fast[4].headers, ())

    def test_refuses_settings(self):
        with self.assertRaises(sluice.BadConfig) as e:
            Harness(Uppercase, {"x": "1"})
        self.assertEqual(e.exception.message, "unknown setting `x` (this operator takes no settings)")


if __name__ == "__main__":
    unittest.main()
