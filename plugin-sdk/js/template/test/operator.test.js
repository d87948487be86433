// Native unit tests: `node --test` (no Wasm needed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { BadRecords, ConfigError } from "../sdk/sluice.js";
import { Harness, takeLog } from "../sdk/testing.js";
import Operator from "../src/operator.js";

test("prefixes values", () => {
  const op = new Harness(Operator, { prefix: "* " });
  assert.deepEqual(op.runLines(["hello", "world"]), ["* hello", "* world"]);
});

test("rejects empty values by index", () => {
  const op = new Harness(Operator);
  assert.throws(() => op.runLines(["ok", ""]), (e) => {
    assert.ok(e instanceof BadRecords);
    assert.deepEqual(e.records, [{ index: 1, reason: "empty value" }]);
    return true;
  });
});

test("logs the prefix", () => {
  takeLog();
  new Harness(Operator);
  assert.deepEqual(takeLog(), [{ level: "info", message: 'prefixing values with "> "' }]);
});

test("unknown setting is refused", () => {
  assert.throws(() => new Harness(Operator, { prefx: "x" }),
    new ConfigError("unknown setting `prefx` (accepted: prefix)"));
});
