import { test } from "node:test";
import assert from "node:assert/strict";
import { Batch, ConfigError, text } from "../../../sdk/sluice.js";
import { Harness } from "../../../sdk/testing.js";
import SplitWords from "../src/operator.js";

const rows = (batch) => [...batch].map((r) => [r.key && text(r.key), text(r.value), r.timestamp]);

test("splits on whitespace and keys by word", () => {
  const h = new Harness(SplitWords);
  const out = h.run(Batch.fromValues(["  the quick\tfox ", "", "fox\x0bbox"], 5n));
  assert.deepEqual(rows(out), [
    ["the", "the", 5n], ["quick", "quick", 5n], ["fox", "fox", 5n], ["fox\x0bbox", "fox\x0bbox", 5n],
  ]);
});

test("lowercase and unkeyed", () => {
  const h = new Harness(SplitWords, { lowercase: "true", keyed: "false" });
  assert.deepEqual(rows(h.run(Batch.fromValues(["The FOX"], 0n))), [[null, "the", 0n], [null, "fox", 0n]]);
});

test("split_on non-alphanumeric drops punctuation", () => {
  const h = new Harness(SplitWords, { split_on: "non-alphanumeric", keyed: "false" });
  assert.deepEqual(h.runLines(["It was -- in short, the café's \"best\"!"]),
    ["It", "was", "in", "short", "the", "café", "s", "best"]);
  assert.throws(() => new Harness(SplitWords, { split_on: "commas" }), new ConfigError(
    'setting `split_on` = "commas" is not valid (accepted: whitespace, non-alphanumeric)'));
});

test("settings errors match the Rust SDK", () => {
  assert.throws(() => new Harness(SplitWords, { lowercase: "yes" }), new ConfigError(
    'setting `lowercase` = "yes" is not valid: provided string was not `true` or `false`'));
  assert.throws(() => new Harness(SplitWords, { lowercas: "true" }), new ConfigError(
    "unknown setting `lowercas` (accepted: split_on, lowercase, keyed)"));
});

test("batch and record paths agree", async () => {
  const { Output } = await import("../../../sdk/sluice.js");
  const ascii = ["  the quick\tfox ", "", "It was -- in short, the cafe's \"best\"!", "vt\x0bff\x0ccr\rnl\n", "ECOLE Zz 9", "   ", "a"];
  for (const lines of [ascii, [...ascii, "café ÉCOLE"], ["\ufeffbom, then\x01ctrl"]])
  for (const settings of [{}, { lowercase: "true" }, { keyed: "false" }, { split_on: "non-alphanumeric", lowercase: "true" }]) {
    const op = new SplitWords(new (await import("../../../sdk/sluice.js")).Config(settings));
    const slow = new Output();
    for (const r of Batch.fromValues(lines, 3n)) op.processRecord(r, slow);
    const fast = new Harness(SplitWords, settings).run(Batch.fromValues(lines, 3n));
    assert.deepEqual(rows(fast), rows(slow.finish()));
    assert.deepEqual([...fast.keyPresent], [...slow.finish().keyPresent]);
  }
});
