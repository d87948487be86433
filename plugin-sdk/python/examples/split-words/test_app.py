import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import Harness

from app import SplitWords


class SplitWordsTest(unittest.TestCase):
    def test_splits_on_whitespace_and_keys_by_word(self):
        h = Harness(SplitWords)
        out = h.run(sluice.Batch.from_values(["  the quick\tfox ", "", "fox"], 5))
        self.assertEqual([(r.key, r.value, r.timestamp) for r in out],
                         [(b"the", b"the", 5), (b"quick", b"quick", 5),
                          (b"fox", b"fox", 5), (b"fox", b"fox", 5)])

    def test_records_keep_their_timestamps(self):
        h = Harness(SplitWords, {"split_on": "non-alphanumeric"})
        out = h.run(sluice.Batch.from_records([(None, "a b", 1), ("k", "", 2), (None, "c,d", 3)]))
        self.assertEqual([(r.key, r.value, r.timestamp) for r in out],
                         [(b"a", b"a", 1), (b"b", b"b", 1), (b"c", b"c", 3), (b"d", b"d", 3)])

    def test_vertical_tab_is_not_whitespace(self):
        h = Harness(SplitWords, {"keyed": "false"})
        self.assertEqual(h.run_lines(["a\x0bb c\x0cd\re\x1cf"]), ["a\x0bb", "c", "d", "e\x1cf"])
        self.assertEqual(h.run_lines(["a b\x1cc"]), ["a", "b\x1cc"])

    def test_lowercase_and_unkeyed(self):
        h = Harness(SplitWords, {"lowercase": "true", "keyed": "false"})
        out = h.run(sluice.Batch.from_values(["The FOX"]))
        self.assertEqual([(r.key, r.value) for r in out], [(None, b"the"), (None, b"fox")])

    def test_split_on_non_alphanumeric_drops_punctuation(self):
        h = Harness(SplitWords, {"split_on": "non-alphanumeric", "keyed": "false"})
        self.assertEqual(h.run_lines(["It was -- in short, the café's \"best\"!"]),
                         ["It", "was", "in", "short", "the", "café", "s", "best"])
        with self.assertRaises(sluice.BadConfig) as e:
            Harness(SplitWords, {"split_on": "commas"})
        self.assertEqual(e.exception.message, 'setting `split_on` = "commas" is not valid '
                         "(accepted: whitespace, non-alphanumeric)")

    def test_bad_boolean_is_a_config_error(self):
        with self.assertRaises(sluice.BadConfig) as e:
            Harness(SplitWords, {"lowercase": "yes"})
        self.assertEqual(e.exception.message, 'setting `lowercase` = "yes" is not valid: '
                         "provided string was not `true` or `false`")
        with self.assertRaises(sluice.BadConfig) as e:
            Harness(SplitWords, {"split": "x"})
        self.assertEqual(e.exception.message,
                         "unknown setting `split` (accepted: split_on, lowercase, keyed)")


if __name__ == "__main__":
    unittest.main()
