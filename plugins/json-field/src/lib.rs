//! `json-field`: parses each value as a JSON object and sets a field as the key.
//!
//! Settings:
//!
//! - `field` (required): the field whose value becomes the key; a dotted path
//!   (`user.id`) reaches into nested objects. Strings are used as they are,
//!   other JSON values as their JSON text.
//! - `missing` (`reject` or `keep`, default `reject`): what to do with an object
//!   that lacks the field — reject the record, or pass it on without a key.
//!
//! A value that is not a JSON object is rejected with the parser's reason, so
//! it reaches the dead-letter file.

use sluice_sdk::{Config, Error, Operator, Output, Record, export_operator};

/// Keys records by a JSON field.
pub struct JsonField {
    path: Vec<String>,
    keep_missing: bool,
}

impl Operator for JsonField {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["field", "missing"])?;
        let field = config.require("field")?;
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(Error::BadConfig(format!(
                "setting `field` = {field:?} is not a field name or dotted path like `user.id`"
            )));
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
            path: field.split('.').map(str::to_owned).collect(),
            keep_missing,
        })
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        let doc: serde_json::Value =
            serde_json::from_slice(record.value).map_err(|e| format!("invalid JSON: {e}"))?;
        if !doc.is_object() {
            return Err("JSON value is not an object".to_string());
        }
        let mut field = Some(&doc);
        for part in &self.path {
            field = field.and_then(|v| v.get(part));
        }
        match field {
            Some(serde_json::Value::String(s)) => {
                out.emit(Some(s.as_bytes()), record.value, record.timestamp)
            }
            Some(other) => out.emit(
                Some(other.to_string().as_bytes()),
                record.value,
                record.timestamp,
            ),
            None if self.keep_missing => out.emit(None, record.value, record.timestamp),
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
    fn keep_missing_passes_unkeyed() {
        let mut h = Harness::<JsonField>::new(&[("field", "id"), ("missing", "keep")]).unwrap();
        let out = h.run(&Batch::from_values([r#"{"x":1}"#], 0)).unwrap();
        assert_eq!(out.get(0).unwrap().key, None);
    }
}
