"""Unit tests of the SDK itself: `python3 -m unittest discover -s tests` from plugin-sdk/python."""
import contextlib
import io
import unittest

import sluice_sdk as sluice
from sluice_sdk.testing import Harness, ReducerHarness, take_log


class ConfigTest(unittest.TestCase):
    def test_messages_match_the_rust_sdk(self):
        c = sluice.Config([("a", "1"), ("b", "x\"y"), ("a", "2")])
        self.assertEqual(c.get("a"), "1")
        self.assertEqual(c["b"], 'x"y')
        cases = [
            (lambda: sluice.Config({"k": "v"}).allow_only(), "unknown setting `k` (this operator takes no settings)"),
            (lambda: c.allow_only("a"), "unknown setting `b` (accepted: a)"),
            (lambda: c.require("z"), "missing required setting `z`"),
            (lambda: c.bool("b"), 'setting `b` = "x\\"y" is not valid: provided string was not `true` or `false`'),
            (lambda: c.int("b"), 'setting `b` = "x\\"y" is not valid: invalid digit found in string'),
            (lambda: sluice.Config({"n": ""}).int("n"), 'setting `n` = "" is not valid: cannot parse integer from empty string'),
            (lambda: sluice.Config({"n": "9223372036854775808"}).int("n"),
             'setting `n` = "9223372036854775808" is not valid: number too large to fit in target type'),
        ]
        for call, message in cases:
            with self.assertRaises(sluice.BadConfig) as e:
                call()
            self.assertEqual(e.exception.message, message)
        self.assertEqual(sluice.Config({"n": "-12"}).int("n"), -12)
        self.assertIs(sluice.Config({"f": "false"}).bool("f", True), False)
        self.assertEqual(c.parse("a", float), 1.0)

    def test_debug_str_is_rusts(self):
        self.assertEqual(sluice.debug_str("> "), '"> "')
        self.assertEqual(sluice.debug_str('a"\\\n\t\r\0\x0b\x7f'), '"a\\"\\\\\\n\\t\\r\\0\\u{b}\\u{7f}"')
        self.assertEqual(sluice.debug_str("café \u00a0\u0301'"), '"café \\u{a0}\\u{301}\'"')


class BatchTest(unittest.TestCase):
    def test_round_trip_keys_headers(self):
        b = sluice.Batch.from_records([
            (None, "a", 1), ("", "b", 2, [("h", None)]), ("k", "c", 3, [("x", "1"), ("x", "2")])])
        b.validate()
        self.assertEqual([r.key for r in b], [None, b"", b"k"])
        self.assertEqual(b.key_present, b"\x00\x01\x01")
        self.assertEqual(b.headers.value_present, b"\x00\x01\x01")
        self.assertEqual(b[2].header("x"), b"2")
        self.assertEqual(b[1].header("h", "none"), None)
        self.assertEqual(b[-1], list(b)[2])
        out = sluice.Output()
        for r in b:
            out.forward(r)
        self.assertEqual(out.finish(), b)

    def test_unkeyed_batches_have_no_key_present(self):
        b = sluice.Batch.from_values(["x", ""])
        self.assertEqual((b.key_present, b.key_ends, b.value_ends, b.headers), (b"", [0, 0], [1, 1], None))
        self.assertEqual(len(sluice.Batch.from_values([])), 0)

    def test_emit_accepts_str(self):
        out = sluice.Output()
        out.emit("é", key="k", timestamp=1, headers=[("h", "v")])
        b = out.finish()
        self.assertEqual((b.values, b.value_ends, b.headers.keys), ("é".encode(), [2], b"h"))


class Upper(sluice.Operator):
    def process(self, record, out):
        if record.value == b"bad":
            raise sluice.Reject("bad value")
        if record.value == b"boom":
            raise KeyError("boom")
        out.forward(record, record.value.upper())


class Both(sluice.Operator):
    def process_batch(self, batch, out):
        out.emit(b"x", timestamp=0)
        return batch


class OperatorTest(unittest.TestCase):
    def test_reject_collects_indices(self):
        with self.assertRaises(sluice.BadRecords) as e:
            Harness(Upper).run_lines(["a", "bad", "c", "bad"])
        self.assertEqual(e.exception.records, [(1, "bad value"), (3, "bad value")])
        self.assertEqual(str(e.exception), "2 bad record(s), first at index 1: bad value")

    def test_default_init_refuses_settings(self):
        with self.assertRaises(sluice.BadConfig):
            Harness(Upper, {"a": "b"})

    def test_returning_and_emitting_is_an_error(self):
        with self.assertRaises(sluice.Failed):
            Harness(Both).run_lines(["a"])

    def test_log_is_captured(self):
        take_log()
        sluice.log.warn("careful")
        sluice.log(sluice.Level.DEBUG, "d")
        self.assertEqual(take_log(), [(sluice.Level.WARN, "careful"), (sluice.Level.DEBUG, "d")])

    def test_exports_are_plain_classes_natively(self):
        T = sluice.export(Upper)
        self.assertTrue(hasattr(T, "init") and hasattr(T, "process"))
        T2, S = sluice.export_stateful(Upper)
        self.assertTrue(hasattr(S, "snapshot") and hasattr(S, "restore"))
        self.assertEqual(sluice.export_reducer(sluice.Reducer).__name__, "Reducer")


class Concat(sluice.Reducer):
    def reduce(self, group):
        acc = group.accumulator if group.accumulator is not None else b"<new>"
        for i, v in enumerate(group.values):
            if v == b"bad":
                group.reject(i, f"{group.first + i} is bad")
            acc += v
        return acc


class ReduceTest(unittest.TestCase):
    def test_every_key_in_one_call(self):
        g = sluice.Groups.of([("a", None, ["1", "2"]), ("b", "x", ["3"]), ("", "", [""])])
        out = sluice.reduce_all(Concat(sluice.Config()), g)
        self.assertEqual([out.get(k) for k in range(4)], [b"<new>12", b"x3", b"", None])

    def test_rejections_of_all_keys_come_back_together(self):
        g = sluice.Groups.of([("a", None, ["bad", "ok"]), ("b", None, ["fine"]), ("c", None, ["ok", "bad"])])
        with self.assertRaises(sluice.BadRecords) as e:
            sluice.reduce_all(Concat(sluice.Config()), g)
        self.assertEqual(e.exception.records, [(0, "0 is bad"), (4, "4 is bad")])

    def test_malformed_groups_are_refused(self):
        g = sluice.Groups.of([("a", None, ["1"])])
        g.group_ends = [2]
        with self.assertRaises(sluice.Failed) as e:
            sluice.reduce_all(Concat(sluice.Config()), g)
        self.assertIn("malformed groups", e.exception.message)

    def test_harness_maps_indices_to_input_positions(self):
        h = ReducerHarness(Concat)
        with self.assertRaises(sluice.BadRecords) as e:
            h.run([("a", "1"), ("b", "bad"), ("a", "bad")])
        self.assertEqual([r.index for r in e.exception.records], [2, 1])


class Buggy(sluice.Operator):
    def process(self, record, out):
        return {}["missing"]


class _Aborted(Exception):
    pass


class TrapTest(unittest.TestCase):
    """An unexpected exception traps (as a Rust panic does) instead of
    becoming `Failed`: the traceback and a summary go to stderr first."""

    def test_unexpected_exception_prints_and_aborts(self):
        from sluice_sdk import _export

        def abort():
            raise _Aborted

        saved, _export._abort = _export._abort, abort
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), self.assertRaises(_Aborted):
                try:
                    Harness(Buggy).run_lines(["a"])
                except KeyError as e:
                    _export.trap(e)
        finally:
            _export._abort = saved
        text = err.getvalue()
        self.assertIn("Traceback (most recent call last):", text)
        last = text.rstrip("\n").splitlines()[-1]
        self.assertRegex(last, r"^uncaught KeyError: 'missing' \(at test_sdk\.py:\d+ in process\)$")

    def test_describe_without_a_message(self):
        try:
            raise ValueError()
        except ValueError as e:
            self.assertRegex(sluice._export.describe(e), r"^ValueError \(at test_sdk\.py:\d+ in ")


if __name__ == "__main__":
    unittest.main()
