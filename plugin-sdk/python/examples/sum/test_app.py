import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import ReducerHarness

from app import Sum


class SumTest(unittest.TestCase):
    def test_sums_per_key_across_calls(self):
        h = ReducerHarness(Sum)
        self.assertEqual(h.run([("a", "1"), ("b", " 5 "), ("a", "-3")]), [("a", "-2"), ("b", "5")])
        self.assertEqual(h.run([("b", "10"), ("c", "0")]), [("b", "15"), ("c", "0")])
        self.assertEqual(h.accumulator("a"), "-2")

    def test_rejects_non_numbers_naming_the_value_and_keeps_state(self):
        h = ReducerHarness(Sum)
        h.run([("a", "1")])
        with self.assertRaises(sluice.BadRecords) as e:
            h.run([("a", "2"), ("b", "x7"), ("a", "1.5")])
        rs = e.exception.records
        self.assertEqual([r.index for r in rs], [2, 1])  # positions in the input
        self.assertEqual(rs[1].reason, 'value "x7" is not a decimal integer '
                         "(accepted: -9223372036854775808 to 9223372036854775807)")
        self.assertEqual(h.accumulator("a"), "1")
        self.assertIsNone(h.accumulator("b"))
        self.assertEqual(h.run([("a", "2")]), [("a", "3")])

    def test_rejects_overflow(self):
        h = ReducerHarness(Sum)
        h.run([("a", str(2**63 - 1))])
        with self.assertRaises(sluice.BadRecords) as e:
            h.run([("a", "1")])
        self.assertEqual(e.exception.records[0].reason,
                         'value "1" would overflow the total 9223372036854775807 of key "a" '
                         "(a signed 64-bit integer)")
        h.run([("a", "-1")])
        with self.assertRaises(sluice.BadRecords):
            h.run([("b", "99999999999999999999")])

    def test_whitespace_and_signs_like_rust(self):
        h = ReducerHarness(Sum)
        self.assertEqual(h.run([("a", "\x0b+7\u3000"), ("a", "-0")]), [("a", "7")])
        for bad in ["\x1c1", "1_000", "٣", "+", "", "0x10"]:
            with self.assertRaises(sluice.BadRecords, msg=bad):
                h.run([("a", bad)])

    def test_long_values_are_shortened(self):
        h = ReducerHarness(Sum)
        with self.assertRaises(sluice.BadRecords) as e:
            h.run([("k", "x" * 50)])
        self.assertIn('"' + "x" * 40 + '"...', e.exception.records[0].reason)

    def test_corrupt_accumulator_is_a_failure(self):
        groups = sluice.Groups.of([("k", "not a number", ["1"])])
        with self.assertRaises(sluice.Failed) as e:
            sluice.reduce_all(Sum(sluice.Config()), groups)
        self.assertEqual(e.exception.message,
                         'the accumulator of key "k" is not an integer: "not a number"')

    def test_refuses_settings(self):
        with self.assertRaises(sluice.BadConfig):
            ReducerHarness(Sum, {"x": "1"})


if __name__ == "__main__":
    unittest.main()
