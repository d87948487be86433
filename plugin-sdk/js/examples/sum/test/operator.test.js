import { test } from "node:test";
import assert from "node:assert/strict";
import { BadRecords, ConfigError, OperatorError, runReducer } from "../../../sdk/sluice.js";
import { ReducerHarness } from "../../../sdk/testing.js";
import Sum from "../src/operator.js";

test("sums per key across calls", () => {
  const h = new ReducerHarness(Sum);
  assert.deepEqual(h.run([["a", "1"], ["b", " 5 "], ["a", "-3"]]), [["a", "-2"], ["b", "5"]]);
  assert.deepEqual(h.run([["b", "10"], ["c", "0"]]), [["b", "15"], ["c", "0"]]);
  assert.equal(h.accumulator("a"), "-2");
});

test("rejects non-numbers naming the value and keeps state", () => {
  const h = new ReducerHarness(Sum);
  h.run([["a", "1"]]);
  assert.throws(() => h.run([["a", "2"], ["b", "x7"], ["a", "1.5"]]), (e) => {
    assert.ok(e instanceof BadRecords);
    assert.deepEqual(e.records.map((r) => r.index), [2, 1]);
    assert.equal(e.records[1].reason,
      'value "x7" is not a decimal integer (accepted: -9223372036854775808 to 9223372036854775807)');
    return true;
  });
  assert.equal(h.accumulator("a"), "1");
  assert.equal(h.accumulator("b"), undefined);
  assert.deepEqual(h.run([["a", "2"]]), [["a", "3"]]);
});

test("rejects overflow", () => {
  const h = new ReducerHarness(Sum);
  h.run([["a", "9223372036854775807"]]);
  assert.throws(() => h.run([["a", "1"]]), (e) => e.records[0].reason ===
    'value "1" would overflow the total 9223372036854775807 of key "a" (a signed 64-bit integer)');
  h.run([["a", "-1"]]);
  assert.throws(() => h.run([["b", "99999999999999999999"]]), BadRecords);
});

test("corrupt accumulator is a failure", () => {
  const enc = (s) => new TextEncoder().encode(s);
  assert.throws(() => runReducer(new Sum({ allowOnly() {} }), {
    keys: enc("k"), keyEnds: Uint32Array.of(1), accumulators: enc("not a number"),
    accumulatorEnds: Uint32Array.of(12), hasAccumulator: Uint8Array.of(1), values: enc("1"),
    valueEnds: Uint32Array.of(1), groupEnds: Uint32Array.of(1),
  }), new OperatorError('the accumulator of key "k" is not an integer: "not a number"'));
});

test("refuses settings", () => {
  assert.throws(() => new ReducerHarness(Sum, { x: "1" }), ConfigError);
});
