// Native test helpers: run an operator or reducer class under Node, without
// Wasm, through the same code paths as the component.
import {
  Batch, Config, __takeLog, runOperator, runReducer, text,
} from "./sluice.js";

function config(settings) {
  return settings instanceof Config ? settings : new Config(settings);
}

/** Runs an operator class natively. */
export class Harness {
  /** `settings`: `{ key: "value" }` or `[[key, value], ...]`; a ConfigError
   *  is thrown as `init` would refuse them. */
  constructor(OperatorClass, settings = {}) {
    this.operator = new OperatorClass(config(settings));
  }

  /** The output Batch for `input` (a Batch, or a list of value strings);
   *  throws BadRecords / OperatorError as the component would fail. */
  run(input) {
    const batch = input instanceof Batch ? input : Batch.fromValues(input, 0n);
    return runOperator(this.operator, batch);
  }

  /** The output values, as strings, for lines of input. */
  runLines(lines) {
    return [...this.run(Batch.fromValues(lines, 0n))].map((r) => text(r.value));
  }
}

/** Runs a reducer class natively, keeping each key's accumulator between
 *  calls as the host does. */
export class ReducerHarness {
  constructor(ReducerClass, settings = {}) {
    this.reducer = new ReducerClass(config(settings));
    this.accumulators = new Map(); // key string -> accumulator string
  }

  /** Groups `[key, value]` pairs by key (first-seen order), runs one call,
   *  stores the new accumulators and returns `[[key, accumulator], ...]`.
   *  Throws BadRecords (indices are positions in `pairs`, as the host
   *  maps them) and leaves the accumulators as they were. */
  run(pairs) {
    const order = [];
    const byKey = new Map();
    pairs.forEach(([k, v], i) => {
      if (!byKey.has(k)) {
        byKey.set(k, []);
        order.push(k);
      }
      byKey.get(k).push([v, i]);
    });
    const enc = new TextEncoder();
    const keys = [], keyEnds = [], accs = [], accEnds = [], has = [];
    const values = [], valueEnds = [], groupEnds = [], origin = [];
    let kl = 0, al = 0, vl = 0;
    for (const k of order) {
      const kb = enc.encode(k);
      keys.push(...kb); kl += kb.length; keyEnds.push(kl);
      const acc = this.accumulators.get(k);
      if (acc !== undefined) {
        const ab = enc.encode(acc);
        accs.push(...ab); al += ab.length;
      }
      accEnds.push(al);
      has.push(acc === undefined ? 0 : 1);
      for (const [v, i] of byKey.get(k)) {
        const vb = enc.encode(v);
        values.push(...vb); vl += vb.length; valueEnds.push(vl);
        origin.push(i);
      }
      groupEnds.push(valueEnds.length);
    }
    let out;
    try {
      out = runReducer(this.reducer, {
        keys: Uint8Array.from(keys), keyEnds: Uint32Array.from(keyEnds),
        accumulators: Uint8Array.from(accs), accumulatorEnds: Uint32Array.from(accEnds),
        hasAccumulator: Uint8Array.from(has), values: Uint8Array.from(values),
        valueEnds: Uint32Array.from(valueEnds), groupEnds: Uint32Array.from(groupEnds),
      });
    } catch (e) {
      if (e.records) for (const r of e.records) r.index = origin[r.index];
      throw e;
    }
    const result = [];
    order.forEach((k, i) => {
      const acc = text(out.data.subarray(i === 0 ? 0 : out.ends[i - 1], out.ends[i]));
      this.accumulators.set(k, acc);
      result.push([k, acc]);
    });
    return result;
  }

  /** The accumulator kept for `key`, or undefined. */
  accumulator(key) {
    return this.accumulators.get(key);
  }
}

/** The lines logged (natively) since the last call: `[{ level, message }]`. */
export function takeLog() {
  return __takeLog();
}
