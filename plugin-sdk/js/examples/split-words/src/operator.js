// `split-words`: a flatMap from lines to words.
//
// Splits each value into words and emits one record per non-empty word,
// keyed by the word (so a following `count` groups by word). Settings:
//
// - `split_on` (`whitespace` or `non-alphanumeric`, default `whitespace`):
//   what separates words. `non-alphanumeric` also drops punctuation: any byte
//   that is not an ASCII letter or digit, or part of a non-ASCII character,
//   separates words.
// - `lowercase` (`true`/`false`, default `false`): lower-case ASCII letters.
// - `keyed` (`true`/`false`, default `true`): set the word as the key.
import { Batch, ConfigError, quote } from "../../../sdk/sluice.js";

function table(isSeparator) {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = isSeparator(b) ? 1 : 0;
  return t;
}

const isAlnum = (b) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);

/** Separator tables: Rust's `u8::is_ascii_whitespace` (not \x0b), and
 *  "not an ASCII letter or digit, nor part of a non-ASCII character". */
const SEPARATORS = {
  whitespace: table((b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d),
  "non-alphanumeric": table((b) => !(isAlnum(b) || b >= 0x80)),
};

/** Lower-cases ASCII letters of `v` in place. */
function asciiLowercase(v) {
  for (let i = 0; i < v.length; i++) {
    const b = v[i];
    if (b >= 0x41 && b <= 0x5a) v[i] = b + 0x20;
  }
}

export default class SplitWords {
  constructor(config) {
    config.allowOnly(["split_on", "lowercase", "keyed"]);
    const splitOn = config.get("split_on", "whitespace");
    if (!Object.hasOwn(SEPARATORS, splitOn)) {
      throw new ConfigError(
        `setting \`split_on\` = ${quote(splitOn)} is not valid (accepted: whitespace, non-alphanumeric)`,
      );
    }
    this.separator = SEPARATORS[splitOn];
    this.lowercase = config.bool("lowercase", false);
    this.keyed = config.bool("keyed", true);
  }

  processBatch(batch, out) {
    out.replaceWith(this.split(batch));
  }

  /** The words of a batch, byte by byte with the separator table. (A
   *  regular-expression split of the decoded text measured 3x slower in the
   *  component.) */
  split(batch) {
    // Letters never separate words, so lower-casing the whole buffer first
    // gives the same words as lower-casing each word.
    if (this.lowercase) asciiLowercase(batch.values);
    // Whole-batch path: the output columns are built directly, in one pass
    // over the value bytes (the component's JavaScript engine interprets
    // bytecode, so work per byte and per word must stay minimal). A word is
    // a run of non-separator bytes, so the output values are the input bytes
    // without separators, and a batch has at most one word per value byte.
    const src = batch.values, ends = batch.valueEnds, times = batch.timestamps;
    const sep = this.separator;
    const words = new Uint8Array(src.length);
    const wordEnds = new Uint32Array(src.length);
    const stamps = new BigInt64Array(src.length);
    let i = 0, o = 0, w = 0;
    for (let r = 0; r < ends.length; r++) {
      const end = ends[r], first = w;
      let inWord = false;
      for (; i < end; i++) {
        const b = src[i];
        if (sep[b] === 0) {
          words[o++] = b;
          inWord = true;
        } else if (inWord) {
          wordEnds[w++] = o;
          inWord = false;
        }
      }
      if (inWord) wordEnds[w++] = o;
      if (w > first) stamps.fill(times[r], first, w);
    }
    return this.wordBatch(words.subarray(0, o), wordEnds.subarray(0, w), stamps.subarray(0, w));
  }

  /** The output batch: one record per word, keyed by it when `keyed`. */
  wordBatch(values, valueEnds, timestamps) {
    const n = valueEnds.length;
    return new Batch({
      values, valueEnds, timestamps,
      ...(this.keyed
        ? { keys: values, keyEnds: valueEnds, keyPresent: new Uint8Array(n).fill(1) }
        : { keyEnds: new Uint32Array(n) }),
    });
  }

  /** The same, one record at a time with the record API (what
   *  processBatch does, more slowly; kept as the readable definition and
   *  checked against it in the tests). */
  processRecord(record, out) {
    const v = record.value, sep = this.separator;
    let i = 0;
    while (i < v.length) {
      while (i < v.length && sep[v[i]] === 1) i++;
      const start = i;
      while (i < v.length && sep[v[i]] === 0) i++;
      if (start === i) break;
      let word = v.subarray(start, i);
      if (this.lowercase) {
        word = word.slice();
        asciiLowercase(word);
      }
      out.emit(this.keyed ? word : null, word, record.timestamp);
    }
  }
}
