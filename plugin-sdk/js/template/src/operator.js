// `{{NAME}}`: a Sluice operator.
//
// Prefixes every value with a configurable text and rejects empty values.
// Settings (the `config` table of the operator in a job file):
//
// - `prefix` (default "> "): text put in front of each value.
//
// Build it with `sluice plugin build`, try it with `sluice plugin test`.
import { bytes, log, quote } from "../sdk/sluice.js";

/** The operator. One instance lives in each Wasm instance; the host keeps
 *  one instance per partition, so `this` may hold state between batches. */
export default class Operator {
  /** Reads the settings; a ConfigError (thrown by `allowOnly`, `require`,
   *  `bool`, ...) stops the job before it starts. */
  constructor(config) {
    config.allowOnly(["prefix"]);
    const prefix = config.get("prefix", "> ");
    log.info(`prefixing values with ${quote(prefix)}`);
    this.prefix = bytes(prefix);
  }

  /** Called for each record of a batch. Emit any number of records to
   *  `out`; `out.reject(record, reason)` sends the record to the job's
   *  dead-letter file with the reason. */
  processRecord(record, out) {
    if (record.value.length === 0) {
      out.reject(record, "empty value");
      return;
    }
    out.emit(record.key, [this.prefix, record.value], record.timestamp);
  }
}
