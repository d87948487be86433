// `sum`: a keyed reducer adding up decimal integers per key.
//
// Each record's value is a signed 64-bit integer in decimal text;
// surrounding whitespace is ignored. The accumulator is the key's running
// total as decimal text. A value that is not an integer, or that would make
// the total overflow, is rejected with a reason naming the value, and the
// total stays as it was.
import { OperatorError, quote } from "../../../sdk/sluice.js";

const MIN = -(2n ** 63n);
const MAX = 2n ** 63n - 1n;
const strict = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder();

// Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` uses.
const SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** Trimmed decimal text as a BigInt in the i64 range, or null. */
function parse(bytes) {
  let s;
  try {
    s = strict.decode(bytes);
  } catch {
    return null;
  }
  s = s.replace(SPACE, "");
  if (!/^[+-]?[0-9]+$/.test(s)) return null;
  const x = BigInt(s);
  return x < MIN || x > MAX ? null : x;
}

/** A value quoted for a message, shortened when long. */
function quoted(bytes) {
  const MAX_LEN = 40;
  const t = quote(lossy.decode(bytes.subarray(0, MAX_LEN)));
  return bytes.length > MAX_LEN ? `${t}...` : t;
}

export default class Sum {
  constructor(config) {
    config.allowOnly([]);
  }

  reduce(group) {
    let total = 0n;
    if (group.accumulator !== null) {
      total = parse(group.accumulator);
      if (total === null) {
        throw new OperatorError(
          `the accumulator of key ${quoted(group.key)} is not an integer: ${quoted(group.accumulator)}`,
        );
      }
    }
    for (const value of group.values()) {
      const x = parse(value.bytes);
      if (x === null) {
        group.reject(value,
          `value ${quoted(value.bytes)} is not a decimal integer (accepted: -9223372036854775808 to 9223372036854775807)`);
        continue;
      }
      const t = total + x;
      if (t < MIN || t > MAX) {
        group.reject(value,
          `value ${quoted(value.bytes)} would overflow the total ${total} of key ${quoted(group.key)} (a signed 64-bit integer)`);
      } else {
        total = t;
      }
    }
    return String(total);
  }
}
