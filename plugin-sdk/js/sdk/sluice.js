// Sluice operator SDK for JavaScript.
//
// A plain ES module: it runs under Node (unit tests, no Wasm) and inside the
// component built with componentize-js. It never imports the host itself;
// the generated entry glue (build/entry.js) hands the host's `log` to
// `exportTransformer` / `exportReducer`.
//
// An operator is a class:
//
//   export default class Shout {
//     constructor(config) { config.allowOnly([]); }
//     processRecord(record, out) { out.forward(record, record.value.map(toUpper)); }
//   }
//
// The host calls the component once per micro-batch; the SDK walks the
// batch's flat buffers and calls `processRecord` for each record (or
// `processBatch` once, when the class defines it).
//
// Errors: throw ConfigError (bad settings), OperatorError (stop the job) or
// reject records with `out.reject`. Anything else thrown is a bug: as a
// panic in a Rust operator, it makes the component trap, after the SDK writes
// it with its stack to stderr (which the host logs), and the host sends the
// record to the dead-letter file and goes on with a fresh instance.

const encoder = new TextEncoder();
const utf8 = new TextDecoder();
const EMPTY_U8 = new Uint8Array(0);
const EMPTY_U32 = new Uint32Array(0);
const EMPTY_I64 = new BigInt64Array(0);

// ---------------------------------------------------------------- errors

/** The settings are unusable (the `bad-config` error): the job does not start. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConfigError";
  }
}

/** The operator failed as a whole (the `failed` error): the job stops. */
export class OperatorError extends Error {
  constructor(message) {
    super(message);
    this.name = "OperatorError";
  }
}

/** Input records that cannot be processed (the `bad-records` error).
 *  `records` is a list of `{ index, reason }`. Prefer `out.reject(...)`. */
export class BadRecords extends Error {
  constructor(records) {
    const first = records[0];
    super(
      `${records.length} bad record(s)` +
        (first ? `, first at index ${first.index}: ${first.reason}` : ""),
    );
    this.name = "BadRecords";
    this.records = records;
  }
}

// ------------------------------------------------------------------ log

let logSink = (level, message) => {
  captured.push({ level, message });
};
const captured = [];

/** Writes lines to the host log, tagged with job, operator and worker.
 *  Natively (unit tests) lines are kept for `takeLog()` of ./testing.js. */
export const log = Object.freeze({
  trace: (message) => logSink("trace", String(message)),
  debug: (message) => logSink("debug", String(message)),
  info: (message) => logSink("info", String(message)),
  warn: (message) => logSink("warn", String(message)),
  error: (message) => logSink("error", String(message)),
});

/** @internal the lines logged natively since the last call. */
export function __takeLog() {
  return captured.splice(0, captured.length);
}

// ---------------------------------------------------------- text helpers

/** UTF-8 bytes of a string (a Uint8Array is returned as is). */
export function bytes(text) {
  return typeof text === "string" ? encoder.encode(text) : text;
}

/** Text of UTF-8 bytes, with U+FFFD for invalid sequences. */
export function text(data) {
  return typeof data === "string" ? data : utf8.decode(data);
}

function isNonPrintable(c) {
  return (
    c < 0x20 || (c >= 0x7f && c <= 0xa0) || c === 0xad ||
    (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x2064) || c === 0xfeff || (c >= 0xd800 && c <= 0xdfff)
  );
}

/** A string quoted and escaped like Rust's `{:?}`, for messages that match
 *  the Rust SDK's (`"a\tb"`, `"\u{1}"`). */
export function quote(s) {
  let out = '"';
  for (const ch of String(s)) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\0") out += "\\0";
    else if (isNonPrintable(c)) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

// --------------------------------------------------------------- config

/** An operator's settings: the `config` table of its job-file entry, as
 *  key/value strings (nested values as TOML text). */
export class Config {
  /** `entries`: `[[key, value], ...]` or a plain object. */
  constructor(entries = []) {
    this.entries = Array.isArray(entries)
      ? entries.map(([k, v]) => [String(k), String(v)])
      : Object.entries(entries).map(([k, v]) => [k, String(v)]);
  }

  /** The value of `key`, or `fallback` (default undefined) when not set. */
  get(key, fallback = undefined) {
    for (const [k, v] of this.entries) if (k === key) return v;
    return fallback;
  }

  /** The value of `key`; a ConfigError when it is not set. */
  require(key) {
    const v = this.get(key);
    if (v === undefined) throw new ConfigError(`missing required setting \`${key}\``);
    return v;
  }

  /** `parse(value)` of the setting when set, else `fallback`. When `parse`
   *  throws, a ConfigError names the key, the value and the thrown message. */
  parse(key, parse, fallback = undefined) {
    const v = this.get(key);
    if (v === undefined) return fallback;
    try {
      return parse(v);
    } catch (e) {
      throw new ConfigError(
        `setting \`${key}\` = ${quote(v)} is not valid: ${e && e.message !== undefined ? e.message : e}`,
      );
    }
  }

  /** A boolean setting (`true` or `false`), `fallback` when not set. */
  bool(key, fallback = undefined) {
    return this.parse(key, parseBool, fallback);
  }

  /** Refuses any key not in `known`, naming the accepted ones. */
  allowOnly(known) {
    for (const [k] of this.entries) {
      if (!known.includes(k)) {
        const accepted = known.length === 0
          ? "this operator takes no settings"
          : `accepted: ${known.join(", ")}`;
        throw new ConfigError(`unknown setting \`${k}\` (${accepted})`);
      }
    }
  }
}

function parseBool(v) {
  if (v === "true") return true;
  if (v === "false") return false;
  throw new Error("provided string was not `true` or `false`");
}

// -------------------------------------------------------------- records

/** The headers of one record: iterable over `{ key, value }` entries
 *  (Uint8Array views; `value` is null for a null header). */
export class Headers {
  constructor(raw, start, end) {
    this._raw = raw;
    this._start = start;
    this._end = end;
  }

  get length() {
    return this._end - this._start;
  }

  /** Entry `i` (0-based within this record), or undefined. */
  at(i) {
    const h = this._start + i;
    if (i < 0 || h >= this._end) return undefined;
    const r = this._raw;
    const key = r.keys.subarray(h === 0 ? 0 : r.keyEnds[h - 1], r.keyEnds[h]);
    const present = r.valuePresent.length === 0 || r.valuePresent[h] !== 0;
    const value = present
      ? r.values.subarray(h === 0 ? 0 : r.valueEnds[h - 1], r.valueEnds[h])
      : null;
    return { key, value };
  }

  *[Symbol.iterator]() {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /** The value of the last header named `key` (string or bytes): a
   *  Uint8Array, null for a null value, undefined when absent. */
  get(key) {
    const want = bytes(key);
    for (let i = this.length - 1; i >= 0; i--) {
      const h = this.at(i);
      if (equalBytes(h.key, want)) return h.value;
    }
    return undefined;
  }
}

const NO_HEADERS = new Headers(null, 0, 0);

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** One record of a batch. `key` and `value` are Uint8Array views into the
 *  batch (no copy; `key` is null when absent), `timestamp` is a BigInt
 *  (milliseconds since the Unix epoch), `index` its position in the batch. */
export class Record {
  constructor(batch, index, key, value, timestamp) {
    this.index = index;
    this.key = key;
    this.value = value;
    this.timestamp = timestamp;
    this._batch = batch;
  }

  /** The record's headers (empty for most records). */
  get headers() {
    return this._batch.headersOf(this.index);
  }
}

/** A micro-batch in the contract's columnar layout (see wit/operator.wit):
 *  `keys`, `keyEnds`, `keyPresent`, `values`, `valueEnds`, `timestamps`,
 *  `headers` (undefined, or `{ ends, keys, keyEnds, values, valueEnds,
 *  valuePresent }`). Iterate it for Records; whole-batch operators may work
 *  on the buffers directly. */
export class Batch {
  constructor(fields = {}) {
    this.keys = fields.keys ?? EMPTY_U8;
    this.keyEnds = fields.keyEnds ?? EMPTY_U32;
    this.keyPresent = fields.keyPresent ?? EMPTY_U8;
    this.values = fields.values ?? EMPTY_U8;
    this.valueEnds = fields.valueEnds ?? EMPTY_U32;
    this.timestamps = fields.timestamps ?? EMPTY_I64;
    this.headers = fields.headers ?? undefined;
  }

  /** Unkeyed records from values (strings or bytes), all at `timestamp`. */
  static fromValues(values, timestamp = 0n) {
    const b = new BatchBuilder();
    for (const v of values) b.push(null, v, timestamp);
    return b.finish();
  }

  /** Records from `{ key, value, timestamp, headers }` objects (strings or
   *  bytes; `headers` a list of `[key, value]` pairs, value null for null). */
  static from(records) {
    const b = new BatchBuilder();
    for (const r of records) {
      b.push(r.key ?? null, r.value, r.timestamp ?? 0n,
        r.headers?.map((h) => (Array.isArray(h) ? { key: h[0], value: h[1] } : h)));
    }
    return b.finish();
  }

  /** Number of records. */
  get length() {
    return this.valueEnds.length;
  }

  /** Record `i`, or undefined past the end. */
  get(i) {
    if (i < 0 || i >= this.valueEnds.length) return undefined;
    const value = this.values.subarray(i === 0 ? 0 : this.valueEnds[i - 1], this.valueEnds[i]);
    const key = this.keyPresent.length !== 0 && this.keyPresent[i] !== 0
      ? this.keys.subarray(i === 0 ? 0 : this.keyEnds[i - 1], this.keyEnds[i])
      : null;
    return new Record(this, i, key, value, this.timestamps[i]);
  }

  /** The headers of record `i`. */
  headersOf(i) {
    const h = this.headers;
    if (h === undefined || i >= h.ends.length) return NO_HEADERS;
    return new Headers(h, i === 0 ? 0 : h.ends[i - 1], h.ends[i]);
  }

  [Symbol.iterator]() {
    // One pass over the offsets, without recomputing starts per record.
    const n = this.valueEnds.length;
    const { values, valueEnds, keys, keyEnds, keyPresent, timestamps } = this;
    const keyed = keyPresent.length !== 0;
    let i = 0, vstart = 0, kstart = 0;
    const batch = this;
    return {
      [Symbol.iterator]() { return this; },
      next() {
        if (i >= n) return { done: true, value: undefined };
        const vend = valueEnds[i];
        const value = values.subarray(vstart, vend);
        vstart = vend;
        let key = null;
        if (keyed) {
          const kend = keyEnds[i];
          if (keyPresent[i] !== 0) key = keys.subarray(kstart, kend);
          kstart = kend;
        }
        const r = new Record(batch, i, key, value, timestamps[i]);
        i++;
        return { done: false, value: r };
      },
    };
  }
}

// ------------------------------------------------------ growable columns

class ByteColumn {
  constructor(capacity) {
    this.a = new Uint8Array(Math.max(capacity, 16));
    this.n = 0;
  }
  reserve(extra) {
    const need = this.n + extra;
    if (need > this.a.length) {
      const a = new Uint8Array(Math.max(need, this.a.length * 2));
      a.set(this.a.subarray(0, this.n));
      this.a = a;
    }
  }
  pushByte(b) {
    if (this.n === this.a.length) this.reserve(1);
    this.a[this.n++] = b;
  }
  fill(value, count) {
    this.reserve(count);
    this.a.fill(value, this.n, this.n + count);
    this.n += count;
  }
  /** Appends a Uint8Array, a string (UTF-8) or an array of those. */
  append(data) {
    if (data instanceof Uint8Array) {
      // A native copy even for short data: the engine interprets loops.
      const n = this.n, len = data.length;
      if (n + len > this.a.length) this.reserve(len);
      this.a.set(data, n);
      this.n = n + len;
    } else if (typeof data === "string") {
      this.reserve(data.length * 3);
      this.n += encoder.encodeInto(data, this.a.subarray(this.n)).written;
    } else if (Array.isArray(data)) {
      for (let k = 0; k < data.length; k++) this.append(data[k]);
    } else if (ArrayBuffer.isView(data)) {
      this.append(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else {
      throw new TypeError(`expected bytes (Uint8Array), a string or an array of them, got ${typeof data}`);
    }
  }
  view() {
    return this.a.subarray(0, this.n);
  }
}

class U32Column {
  constructor(capacity) {
    this.a = new Uint32Array(Math.max(capacity, 16));
    this.n = 0;
  }
  push(v) {
    if (this.n === this.a.length) {
      const a = new Uint32Array(this.a.length * 2);
      a.set(this.a);
      this.a = a;
    }
    this.a[this.n++] = v;
  }
  fill(v, count) {
    while (this.n + count > this.a.length) this.push(v), count--;
    this.a.fill(v, this.n, this.n + count);
    this.n += count;
  }
  view() {
    return this.a.subarray(0, this.n);
  }
}

class I64Column {
  constructor(capacity) {
    this.a = new BigInt64Array(Math.max(capacity, 16));
    this.n = 0;
  }
  push(v) {
    if (this.n === this.a.length) {
      const a = new BigInt64Array(this.a.length * 2);
      a.set(this.a);
      this.a = a;
    }
    this.a[this.n++] = typeof v === "bigint" ? v : BigInt(Math.trunc(v));
  }
  view() {
    return this.a.subarray(0, this.n);
  }
}

/** Builds a Batch record by record; buffers grow geometrically. */
export class BatchBuilder {
  /** `input`: a batch whose sizes the buffers start from (optional). */
  constructor(input = undefined) {
    const n = input ? input.length : 0;
    this._keys = new ByteColumn(input ? input.keys.length : 0);
    this._keyEnds = new U32Column(n);
    this._keyPresent = new ByteColumn(input ? input.keyPresent.length : 0);
    this._keyed = false;
    this._values = new ByteColumn(input ? input.values.length : 0);
    this._valueEnds = new U32Column(n);
    this._timestamps = new I64Column(n);
    this._h = null; // header columns, created with the first header
  }

  /** Number of records so far. */
  get length() {
    return this._valueEnds.n;
  }

  /** Appends a record. `key`: null/undefined for none, else bytes or a
   *  string (or an array of parts); `value`: the same; `timestamp`: BigInt
   *  or number (ms); `headers`: optional iterable of `{ key, value }`
   *  (value null for a null header) or `[key, value]` pairs. */
  push(key, value, timestamp, headers = undefined) {
    if (key === null || key === undefined) {
      if (this._keyed) this._keyPresent.pushByte(0);
    } else {
      if (!this._keyed) {
        this._keyed = true;
        this._keyPresent.fill(0, this._valueEnds.n);
      }
      this._keys.append(key);
      this._keyPresent.pushByte(1);
    }
    this._keyEnds.push(this._keys.n);
    this._values.append(value);
    this._valueEnds.push(this._values.n);
    if (timestamp === undefined) throw new TypeError("a record needs a timestamp (BigInt or number, ms)");
    this._timestamps.push(timestamp);
    if (this._h !== null) this._h.ends.push(this._h.keyEnds.n);
    if (headers !== undefined && headers !== null) {
      for (const h of headers) {
        if (Array.isArray(h)) this.pushHeader(h[0], h[1]);
        else this.pushHeader(h.key, h.value);
      }
    }
  }

  /** Adds a header to the last record pushed; `value` null for a null value. */
  pushHeader(key, value) {
    const n = this._valueEnds.n;
    if (n === 0) throw new Error("pushHeader on an empty batch: push the record first");
    let h = this._h;
    if (h === null) {
      h = this._h = {
        ends: new U32Column(n), keys: new ByteColumn(64), keyEnds: new U32Column(16),
        values: new ByteColumn(64), valueEnds: new U32Column(16), valuePresent: null,
      };
      h.ends.fill(0, n);
    }
    h.keys.append(key);
    h.keyEnds.push(h.keys.n);
    if (value === null || value === undefined) {
      if (h.valuePresent === null) {
        h.valuePresent = new ByteColumn(16);
        h.valuePresent.fill(1, h.valueEnds.n);
      }
      h.valuePresent.pushByte(0);
    } else {
      h.values.append(value);
      if (h.valuePresent !== null) h.valuePresent.pushByte(1);
    }
    h.valueEnds.push(h.values.n);
    h.ends.a[n - 1] = h.keyEnds.n;
  }

  /** The batch built so far (views on the builder's buffers). */
  finish() {
    const h = this._h;
    return new Batch({
      keys: this._keys.view(),
      keyEnds: this._keyEnds.view(),
      keyPresent: this._keyed ? this._keyPresent.view() : EMPTY_U8,
      values: this._values.view(),
      valueEnds: this._valueEnds.view(),
      timestamps: this._timestamps.view(),
      headers: h === null ? undefined : {
        ends: h.ends.view(), keys: h.keys.view(), keyEnds: h.keyEnds.view(),
        values: h.values.view(), valueEnds: h.valueEnds.view(),
        valuePresent: h.valuePresent === null ? EMPTY_U8 : h.valuePresent.view(),
      },
    });
  }
}

/** Where an operator writes its output records and its rejections. */
export class Output extends BatchBuilder {
  constructor(input = undefined) {
    super(input);
    this._rejected = [];
    this._replacement = null;
  }

  /** Emits a record without headers, or with `headers` (for example
   *  `record.headers` of the input record it comes from). */
  emit(key, value, timestamp, headers = undefined) {
    this.push(key, value, timestamp, headers);
  }

  /** Emits `record` with its key, timestamp and headers, and its value, or
   *  `value` instead when given (a map of values). */
  forward(record, value = record.value) {
    this.push(record.key, value, record.timestamp);
    const b = record._batch;
    if (b && b.headers !== undefined) {
      for (const h of record.headers) this.pushHeader(h.key, h.value);
    }
  }

  /** Rejects an input record (a Record or its index) with `reason`: it goes
   *  to the dead-letter file, or stops the job when there is none. */
  reject(record, reason) {
    const index = typeof record === "number" ? record : record.index;
    this._rejected.push({ index, reason: String(reason) });
  }

  /** Makes `batch` the whole output (a map that keeps record boundaries
   *  changes the input's buffers in place and hands it back). */
  replaceWith(batch) {
    this._replacement = batch;
  }

  /** @internal the output batch, or a BadRecords error. */
  result() {
    if (this._rejected.length !== 0) throw new BadRecords(this._rejected);
    return this._replacement ?? this.finish();
  }
}

/** Runs `op` over one batch: the one place that turns `processBatch` /
 *  `processRecord` plus rejections into the contract's result (the Wasm glue
 *  and the native harness both use it). Throws the SDK errors. */
export function runOperator(op, input) {
  const out = new Output(input);
  if (typeof op.processBatch === "function") {
    op.processBatch(input, out);
  } else {
    // The batch iterator, inlined: no iterator-protocol objects per record.
    const { values, valueEnds, keys, keyEnds, keyPresent, timestamps } = input;
    const keyed = keyPresent.length !== 0;
    let vstart = 0, kstart = 0;
    for (let i = 0; i < valueEnds.length; i++) {
      const vend = valueEnds[i];
      let key = null;
      if (keyed) {
        const kend = keyEnds[i];
        if (keyPresent[i] !== 0) key = keys.subarray(kstart, kend);
        kstart = kend;
      }
      op.processRecord(new Record(input, i, key, values.subarray(vstart, vend), timestamps[i]), out);
      vstart = vend;
    }
  }
  return out.result();
}

// ------------------------------------------------------------- reducers

/** One new value of a Group: `bytes` (a Uint8Array view) and `index`, its
 *  position in the call (what a rejection names). */
export class Value {
  constructor(index, bytes) {
    this.index = index;
    this.bytes = bytes;
  }
}

/** One key of a `reduce` call: `key` (bytes), `accumulator` (bytes, or null
 *  the first time the key is seen) and its new values. */
export class Group {
  constructor(groups, key, accumulator, first, end) {
    this.key = key;
    this.accumulator = accumulator;
    this._g = groups;
    this._first = first;
    this._end = end;
    this._rejected = null;
  }

  /** Number of new values (at least one). */
  get length() {
    return this._end - this._first;
  }

  /** The new values, in arrival order, as Value objects. */
  *values() {
    const { values, valueEnds } = this._g;
    let start = this._first === 0 ? 0 : valueEnds[this._first - 1];
    for (let i = this._first; i < this._end; i++) {
      const end = valueEnds[i];
      yield new Value(i, values.subarray(start, end));
      start = end;
    }
  }

  /** Rejects `value` (a Value or its index) with `reason`. The key's
   *  accumulator stays as it was; the host retries without the value. */
  reject(value, reason) {
    const index = typeof value === "number" ? value : value.index;
    (this._rejected ??= []).push({ index, reason: String(reason) });
  }
}

function checkEnds(name, ends, len) {
  let prev = 0;
  for (let i = 0; i < ends.length; i++) {
    if (ends[i] < prev) return `${name} decreases at entry ${i} (${ends[i]} after ${prev})`;
    prev = ends[i];
  }
  if (ends.length === 0 ? len !== 0 : prev !== len) {
    return `${name} ends at ${prev} but its buffer has ${len} byte(s)`;
  }
  return null;
}

function validateGroups(g) {
  const n = g.keyEnds.length;
  for (const [name, len] of [["accumulator-ends", g.accumulatorEnds.length],
    ["has-accumulator", g.hasAccumulator.length], ["group-ends", g.groupEnds.length]]) {
    if (len !== n) return `${name} has ${len} entries for ${n} keys`;
  }
  return checkEnds("key-ends", g.keyEnds, g.keys.length) ??
    checkEnds("accumulator-ends", g.accumulatorEnds, g.accumulators.length) ??
    checkEnds("value-ends", g.valueEnds, g.values.length) ??
    checkEnds("group-ends", g.groupEnds, g.valueEnds.length);
}

/** Runs `reducer` over every key of one call (`groups` in the contract's
 *  layout: keys, keyEnds, accumulators, accumulatorEnds, hasAccumulator,
 *  values, valueEnds, groupEnds) and returns `{ data, ends }`. Rejections of
 *  all keys are collected into one BadRecords; other errors stop at once. */
export function runReducer(reducer, groups) {
  const bad = validateGroups(groups);
  if (bad !== null) throw new OperatorError(`the host sent malformed groups: ${bad}`);
  const n = groups.keyEnds.length;
  const data = new ByteColumn(groups.accumulators.length + 16 * n);
  const ends = new U32Column(n);
  const rejected = [];
  const { keys, keyEnds, accumulators, accumulatorEnds, hasAccumulator, groupEnds } = groups;
  for (let k = 0; k < n; k++) {
    const key = keys.subarray(k === 0 ? 0 : keyEnds[k - 1], keyEnds[k]);
    const acc = hasAccumulator[k] !== 0
      ? accumulators.subarray(k === 0 ? 0 : accumulatorEnds[k - 1], accumulatorEnds[k])
      : null;
    const group = new Group(groups, key, acc, k === 0 ? 0 : groupEnds[k - 1], groupEnds[k]);
    let result;
    try {
      result = reducer.reduce(group);
    } catch (e) {
      if (e instanceof BadRecords) {
        rejected.push(...e.records);
        continue;
      }
      throw e;
    }
    if (group._rejected !== null) {
      rejected.push(...group._rejected);
      continue;
    }
    if (result === undefined || result === null) {
      throw new OperatorError(`reduce returned no accumulator for key ${quote(text(key))}`);
    }
    data.append(typeof result === "number" || typeof result === "bigint" ? String(result) : result);
    ends.push(data.n);
  }
  if (rejected.length !== 0) throw new BadRecords(rejected);
  return { data: data.view(), ends: ends.view() };
}

// ------------------------------------------------------------ Wasm glue

/** The contract's `error` variant for an error the SDK defines: ConfigError
 *  (`bad-config`), BadRecords (`bad-records`), OperatorError (`failed`).
 *  Anything else is a bug of the operator's: null. */
export function toWitError(e) {
  if (e instanceof ConfigError) return { tag: "bad-config", val: e.message };
  if (e instanceof BadRecords) return { tag: "bad-records", val: e.records };
  if (e instanceof OperatorError) return { tag: "failed", val: e.message || String(e) };
  return null;
}

/** `e` in one line: its name, its message and where it was thrown, e.g.
 *  `TypeError: x is undefined (at src/operator.js:12:5 in processRecord)`. */
export function describeError(e) {
  if (!(e instanceof Error)) {
    let shown;
    try {
      shown = typeof e === "string" ? quote(e) : String(e);
    } catch {
      shown = Object.prototype.toString.call(e);
    }
    return `a thrown ${e === null ? "null" : typeof e} that is not an Error: ${shown}`;
  }
  let where = "";
  // The first frame of the stack: SpiderMonkey's `fn@file:line:col`, V8's
  // `    at fn (file:line:col)`.
  for (const line of String(e.stack ?? "").split("\n")) {
    const sm = /^\s*([^@\s]*)@(.+:\d+:\d+)$/.exec(line);
    const v8 = sm ? null : /^\s*at (?:(\S+) \()?(.+:\d+:\d+)\)?$/.exec(line);
    const m = sm ?? v8;
    if (m) {
      where = ` (at ${m[2]}${m[1] ? ` in ${m[1]}` : ""})`;
      break;
    }
  }
  return `${e.name || "Error"}${e.message ? `: ${e.message}` : ""}${where}`;
}

/** Ends the call with a Wasm trap for `e`, an error the operator did not
 *  mean to throw (a bug), as a panic does in a Rust operator: the host then
 *  isolates the record that throws it, writes it to the dead-letter file,
 *  re-creates the instance and goes on (an OperatorError would stop the
 *  job). `e` and where it was thrown go to stderr first, which the host
 *  logs. The value thrown out of the export can never be lowered as an
 *  `error` (it has no `tag`): componentize-js reads its `payload`, which
 *  throws `e` on, reports `e` with its stack on stderr and traps. */
function trap(e) {
  const summary = describeError(e);
  try {
    console.error(`uncaught ${summary}`);
  } catch {
    // nothing more to say
  }
  const err = e instanceof Error ? e : new Error(summary);
  const escape = { toString: () => `uncaught ${summary}` };
  Object.defineProperty(escape, "payload", {
    get() {
      throw err;
    },
  });
  throw escape;
}

/** Throws the contract's error for `e`, or traps (see `trap`). */
function lower(e) {
  const w = toWitError(e);
  if (w === null) trap(e);
  throw w;
}

function installLog(hostLog) {
  if (hostLog) logSink = hostLog;
}

/** The `transformer` export for an operator class (used by build/entry.js). */
export function exportTransformer(OperatorClass, hostLog) {
  installLog(hostLog);
  let op = null;
  return {
    init(config) {
      try {
        op = new OperatorClass(new Config(config));
      } catch (e) {
        lower(e);
      }
    },
    process(input) {
      if (op === null) throw { tag: "failed", val: "process called before init" };
      let out;
      try {
        out = runOperator(op, new Batch(input));
      } catch (e) {
        lower(e);
      }
      const h = out.headers;
      const anyHeaders = h !== undefined && (h.ends.length !== 0 || h.keys.length !== 0 ||
        h.keyEnds.length !== 0 || h.values.length !== 0 || h.valueEnds.length !== 0 ||
        h.valuePresent.length !== 0);
      return {
        keys: out.keys, keyEnds: out.keyEnds, keyPresent: out.keyPresent,
        values: out.values, valueEnds: out.valueEnds, timestamps: out.timestamps,
        headers: anyHeaders ? h : undefined,
      };
    },
  };
}

/** The `reducer` export for a reducer class (used by build/entry.js). */
export function exportReducer(ReducerClass, hostLog) {
  installLog(hostLog);
  let reducer = null;
  return {
    init(config) {
      try {
        reducer = new ReducerClass(new Config(config));
      } catch (e) {
        lower(e);
      }
    },
    reduce(groups) {
      if (reducer === null) throw { tag: "failed", val: "reduce called before init" };
      try {
        return runReducer(reducer, groups);
      } catch (e) {
        lower(e);
      }
    },
  };
}
