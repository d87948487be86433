import { test } from "node:test";
import assert from "node:assert/strict";
import { Batch, ConfigError, text } from "../../../sdk/sluice.js";
import { Harness } from "../../../sdk/testing.js";
import Uppercase, { asciiUppercase, asciiUppercaseBytes } from "../src/operator.js";

test("uppercases values and keeps keys, timestamps and headers", () => {
  const h = new Harness(Uppercase);
  const out = [...h.run(Batch.from([
    { key: "k", value: "hello, World 1", timestamp: 7n },
    { value: "ünïcode ok", timestamp: 8n, headers: [["trace", "t-1"], ["trace", null]] },
    { value: "", timestamp: 9n },
  ]))];
  assert.equal(text(out[0].key), "k");
  assert.equal(text(out[0].value), "HELLO, WORLD 1");
  assert.equal(out[0].timestamp, 7n);
  assert.equal(out[1].key, null);
  assert.equal(text(out[1].value), "üNïCODE OK");
  const hs = [...out[1].headers];
  assert.equal(hs.length, 2);
  assert.equal(text(hs[0].value), "t-1");
  assert.equal(hs[1].value, null);
  assert.equal(out[2].headers.length, 0);
});

test("every alignment and every byte", () => {
  const all = Uint8Array.from({ length: 256 * 3 }, (_, i) => i & 255);
  for (let off = 0; off < 4; off++) {
    const v = all.slice().subarray(off);
    asciiUppercase(v);
    v.forEach((b, i) => {
      const o = (i + off) & 255;
      assert.equal(b, o >= 0x61 && o <= 0x7a ? o - 32 : o);
    });
  }
});

test("refuses settings", () => {
  assert.throws(() => new Harness(Uppercase, { x: "1" }),
    new ConfigError("unknown setting `x` (this operator takes no settings)"));
});

test("string path equals byte path on tricky input", () => {
  const cases = ["\ufeffbom first then text that is long enough to use strings",
    "ß straße µ ÿ à la carte façade — naïve “quotes” 😀 emoji and more text",
    "plain ascii only but long enough for the string path, yes",
    "invalid \xff utf-8 here".padEnd(40, "x")];
  for (const c of cases) {
    const enc = new TextEncoder().encode(c);
    const bad = c.startsWith("invalid") ? Uint8Array.from([...c].map((ch) => ch.charCodeAt(0) & 255)) : enc;
    const a = bad.slice(), b = bad.slice();
    asciiUppercase(a);
    asciiUppercaseBytes(b);
    assert.deepEqual(a, b);
    assert.deepEqual(a.length, bad.length);
  }
});
