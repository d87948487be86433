import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import Harness, take_log

from app import Prefixer


class OperatorTest(unittest.TestCase):
    def test_prefixes_values(self):
        op = Harness(Prefixer, {"prefix": "* "})
        self.assertEqual(op.run_lines(["hello", "world"]), ["* hello", "* world"])

    def test_rejects_empty_values_by_index(self):
        op = Harness(Prefixer)
        with self.assertRaises(sluice.BadRecords) as e:
            op.run_lines(["ok", ""])
        self.assertEqual(e.exception.records[0].index, 1)
        self.assertEqual(e.exception.records[0].reason, "empty value")

    def test_logs_the_prefix(self):
        take_log()
        Harness(Prefixer)
        self.assertEqual(take_log(), [(sluice.Level.INFO, 'prefixing values with "> "')])

    def test_unknown_setting_is_refused(self):
        with self.assertRaises(sluice.BadConfig):
            Harness(Prefixer, {"prefx": "x"})


if __name__ == "__main__":
    unittest.main()
