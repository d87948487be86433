//! `json-field`: parses each value as a JSON object and sets a field as the key.
//!
//! Settings:
//!
//! - `field` (required): the field whose value becomes the key; a dotted path
//!   (`user.id`) reaches into nested objects. Strings are used as they are,
//!   other JSON values as their JSON text.
//! - `missing` (`reject` or `keep`, default `reject`): what to do with an object
//!   that lacks the field — reject the record, or pass it on without a key.
//! - `timestamp` (optional): a field (dotted path) holding the record's event
//!   time as an integer number of milliseconds since the Unix epoch; it
//!   replaces the ingestion time, for event-time windows. A record without it,
//!   or with a non-integer, is rejected.
//!
//! A value that is not a JSON object is rejected with the parser's reason, so
//! it reaches the dead-letter file. Values and record headers pass unchanged.

use sluice_sdk::{Config, Error, Operator, Output, Record, export_operator};

/// Keys records by a JSON field.
pub struct JsonField {
    path: Vec<String>,
    keep_missing: bool,
    timestamp: Option<Vec<String>>,
}

fn dotted(setting: &str, value: &str) -> Result<Vec<String>, Error> {
    if value.is_empty() || value.split('.').any(str::is_empty) {
        return Err(Error::BadConfig(format!(
            "setting `{setting}` = {value:?} is not a field name or dotted path like `user.id`"
        )));
    }
    Ok(value.split('.').map(str::to_owned).collect())
}

fn lookup<'a>(doc: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(doc, |v, part| v.get(part))
}

impl Operator for JsonField {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["field", "missing", "timestamp"])?;
        let path = dotted("field", config.require("field")?)?;
        let timestamp = config
            .get("timestamp")
            .map(|t| dotted("timestamp", t))
            .transpose()?;
        let keep_missing = match config.get("missing").unwrap_or("reject") {
            "reject" => false,
            "keep" => true,
            other => {
                return Err(Error::BadConfig(format!(
                    "setting `missing` = {other:?} is not valid (accepted: reject, keep)"
                )));
            }
        };
        Ok(JsonField {
            path,
            keep_missing,
            timestamp,
        })
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        let doc: serde_json::Value =
            serde_json::from_slice(record.value).map_err(|e| format!("invalid JSON: {e}"))?;
        if !doc.is_object() {
            return Err("JSON value is not an object".to_string());
        }
        let ts = match &self.timestamp {
            None => record.timestamp,
            Some(path) => lookup(&doc, path)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| {
                    format!(
                        "field `{}` is missing or not an integer timestamp",
                        path.join(".")
                    )
                })?,
        };
        // The record keeps its value and headers; only its key (and
        // perhaps its timestamp) change.
        let (value, headers) = (record.value, record.headers);
        match lookup(&doc, &self.path) {
            Some(serde_json::Value::String(s)) => {
                out.emit_with_headers(Some(s.as_bytes()), value, ts, headers)
            }
            Some(other) => {
                out.emit_with_headers(Some(other.to_string().as_bytes()), value, ts, headers)
            }
            None if self.keep_missing => out.emit_with_headers(None, value, ts, headers),
            None => return Err(format!("field `{}` is missing", self.path.join("."))),
        }
        Ok(())
    }
}

export_operator!(JsonField);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::Batch;
    use sluice_sdk::testing::Harness;

    #[test]
    fn keys_by_nested_field() {
        let mut h = Harness::<JsonField>::new(&[("field", "user.id")]).unwrap();
        let input = Batch::from_values([r#"{"user":{"id":"ada"}}"#, r#"{"user":{"id":42}}"#], 1);
        let out = h.run(&input).unwrap();
        let keys: Vec<_> = out.iter().map(|r| r.key.unwrap().to_vec()).collect();
        assert_eq!(keys, [b"ada".to_vec(), b"42".to_vec()]);
        assert_eq!(out.get(0).unwrap().value, input.get(0).unwrap().value);
    }

    #[test]
    fn keying_keeps_headers() {
        let mut h = Harness::<JsonField>::new(&[("field", "id"), ("missing", "keep")]).unwrap();
        let mut input = Batch::new();
        input.push(None, br#"{"id":"a"}"#, 1);
        input.push_header(b"origin", Some(b"eu"));
        input.push(None, br#"{"other":1}"#, 2);
        input.push_header(b"origin", None);
        input.push(None, br#"{"id":"b"}"#, 3);
        let out = h.run(&input).unwrap();
        for (i, o) in input.iter().zip(out.iter()) {
            assert_eq!(o.headers, i.headers, "record {}", i.index);
        }
        assert_eq!(out.get(0).unwrap().key, Some(&b"a"[..]));
        assert_eq!(out.get(1).unwrap().headers.last(b"origin"), Some(None));
    }

    #[test]
    fn rejects_bad_json_and_missing_field_by_index() {
        let mut h = Harness::<JsonField>::new(&[("field", "id")]).unwrap();
        let err = h
            .run(&Batch::from_values(
                [r#"{"id":1}"#, "not json", r#"{"x":1}"#],
                0,
            ))
            .unwrap_err();
        let Error::BadRecords(rs) = err else {
            panic!("{err:?}")
        };
        assert_eq!(rs.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2]);
        assert!(rs[0].reason.contains("invalid JSON"));
        assert!(rs[1].reason.contains("missing"));
    }

    #[test]
    fn timestamp_from_a_field() {
        let mut h = Harness::<JsonField>::new(&[("field", "id"), ("timestamp", "at.ms")]).unwrap();
        let out = h
            .run(&Batch::from_values(
                [r#"{"id":"a","at":{"ms":1700000000123}}"#],
                5,
            ))
            .unwrap();
        assert_eq!(out.get(0).unwrap().timestamp, 1_700_000_000_123);
        let err = h
            .run(&Batch::from_values([r#"{"id":"a","at":{"ms":"soon"}}"#], 5))
            .unwrap_err();
        assert!(
            err.to_string().contains("not an integer timestamp"),
            "{err}"
        );
    }

    #[test]
    fn keep_missing_passes_unkeyed() {
        let mut h = Harness::<JsonField>::new(&[("field", "id"), ("missing", "keep")]).unwrap();
        let out = h.run(&Batch::from_values([r#"{"x":1}"#], 0)).unwrap();
        assert_eq!(out.get(0).unwrap().key, None);
    }
}
