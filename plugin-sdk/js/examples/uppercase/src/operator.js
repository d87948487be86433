// `uppercase`: a map that upper-cases the ASCII letters of each value.
//
// Keys, timestamps and headers pass through unchanged. Works on the whole
// batch at once: the value buffer is converted in place (at native speed,
// see asciiUppercase); record boundaries do not move, so the input batch
// becomes the output batch without a copy.

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();
const NON_ASCII = /[^\0-\x7f]/;
const NON_ASCII_RUNS = /([^\0-\x7f]+)/;

/** Upper-cases ASCII letters of `v` (a Uint8Array) in place.
 *
 *  The JavaScript engine inside the component interprets bytecode, so a loop
 *  over bytes costs tens of nanoseconds per byte; the engine's own string
 *  functions run at native speed. Valid UTF-8 is decoded once, its ASCII
 *  runs upper-cased with `toUpperCase` (non-ASCII runs kept as they are)
 *  and encoded back over the same bytes: same length, same bytes elsewhere.
 *  Anything else (invalid UTF-8) takes the byte loop, four bytes at a time. */
export function asciiUppercase(v) {
  if (v.length >= 32) {
    const s = utf8.decode(v);
    if (!s.includes("\uFFFD")) {
      const up = NON_ASCII.test(s)
        ? s.split(NON_ASCII_RUNS).map((part, i) => (i % 2 === 0 ? part.toUpperCase() : part)).join("")
        : s.toUpperCase();
      encoder.encodeInto(up, v);
      return;
    }
  }
  asciiUppercaseBytes(v);
}

/** The byte loop: SWAR over 32-bit words. */
export function asciiUppercaseBytes(v) {
  const n = v.length;
  let i = 0;
  while (i < n && ((v.byteOffset + i) & 3) !== 0) {
    const b = v[i];
    if (b >= 0x61 && b <= 0x7a) v[i] = b - 0x20;
    i++;
  }
  const words = (n - i) >>> 2;
  if (words > 0) {
    // SWAR: a byte of `m` is 0x80 where the byte of `x` is in 'a'..='z'.
    const w = new Uint32Array(v.buffer, v.byteOffset + i, words);
    for (let j = 0; j < words; j++) {
      const x = w[j];
      const h = x & 0x7f7f7f7f;
      const m = (h + 0x1f1f1f1f) & ~(h + 0x05050505) & ~x & 0x80808080;
      if (m !== 0) w[j] = x ^ (m >>> 2);
    }
    i += words * 4;
  }
  for (; i < n; i++) {
    const b = v[i];
    if (b >= 0x61 && b <= 0x7a) v[i] = b - 0x20;
  }
}

export default class Uppercase {
  constructor(config) {
    config.allowOnly([]);
  }

  processBatch(batch, out) {
    asciiUppercase(batch.values);
    out.replaceWith(batch);
  }
}

