//! `json-field`: parses each value as a JSON object and sets a field as the key.
//!
//! Settings:
//!
//! - `field`: the field whose value becomes the key; a dotted path
//!   (`user.id`) reaches into nested objects. Strings are used as they are,
//!   other JSON values as their JSON text. Without it the record keeps its
//!   key (then `value` or `timestamp` must be set).
//! - `value` (optional): a field (dotted path) whose text replaces the
//!   value, as the key is made (`{"n": 5}` with `value = "n"` gives `5`), so
//!   that a reducer such as `sum` can read it; a record without it is
//!   rejected.
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
    path: Option<Vec<String>>,
    value: Option<Vec<String>>,
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
        config.allow_only(&["field", "missing", "timestamp", "value"])?;
        let path = config
            .get("field")
            .map(|f| dotted("field", f))
            .transpose()?;
        let timestamp = config
            .get("timestamp")
            .map(|t| dotted("timestamp", t))
            .transpose()?;
        let value = config
            .get("value")
            .map(|v| dotted("value", v))
            .transpose()?;
        if path.is_none() && value.is_none() && timestamp.is_none() {
            return Err(Error::BadConfig(
                "setting `field` is missing (or set `value` or `timestamp` to keep the key)".into(),
            ));
        }
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
            value,
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
        // The record keeps its headers, and its value unless `value` says
        // otherwise; its key (and perhaps its timestamp) change.
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let new_value = match &self.value {
            None => None,
            Some(path) => Some(
                lookup(&doc, path)
                    .map(text)
                    .ok_or_else(|| format!("field `{}` is missing", path.join(".")))?,
            ),
        };
        let value = new_value.as_deref().map_or(record.value, str::as_bytes);
        let headers = record.headers;
        let Some(path) = &self.path else {
            out.emit_with_headers(record.key, value, ts, headers);
            return Ok(());
        };
        match lookup(&doc, path) {
            Some(v) => out.emit_with_headers(Some(text(v).as_bytes()), value, ts, headers),
            None if self.keep_missing => out.emit_with_headers(None, value, ts, headers),
            None => return Err(format!("field `{}` is missing", path.join("."))),
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
    fn value_replaces_the_value_and_without_field_the_key_stays() {
        let mut h = Harness::<JsonField>::new(&[("value", "n")]).unwrap();
        let mut input = Batch::new();
        input.push(Some(b"k"), br#"{"n":5,"w":"x"}"#, 1);
        input.push(Some(b"j"), br#"{"n":"seven"}"#, 2);
        let out = h.run(&input).unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|r| (r.key.unwrap().to_vec(), r.value.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (b"k".to_vec(), b"5".to_vec()),
                (b"j".to_vec(), b"seven".to_vec())
            ]
        );
        assert!(h.run(&Batch::from_values([r#"{"m":1}"#], 0)).is_err());
        assert!(Harness::<JsonField>::new(&[("missing", "keep")]).is_err());
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
