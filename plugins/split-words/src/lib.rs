//! `split-words`: a flatMap from lines to words.
//!
//! Splits each value into words and emits one record per non-empty word,
//! keyed by the word (so a following `count` groups by word). Settings:
//!
//! - `split_on` (`whitespace` or `non-alphanumeric`, default `whitespace`):
//!   what separates words. `non-alphanumeric` also drops punctuation: any byte
//!   that is not an ASCII letter or digit, or part of a non-ASCII character,
//!   separates words.
//! - `lowercase` (`true`/`false`, default `false`): lower-case ASCII letters.
//! - `keyed` (`true`/`false`, default `true`): set the word as the key.

use sluice_sdk::bytes::ByteSet;
use sluice_sdk::{Batch, Config, Error, Operator, Output, Record, export_operator};

/// Splits lines into words.
pub struct SplitWords {
    /// The bytes that separate words, tested 16 at a time.
    separator: ByteSet,
    lowercase: bool,
    keyed: bool,
    /// The lowercased word, reused across records.
    lowered: Vec<u8>,
}

fn is_separator_punct(b: &u8) -> bool {
    // Bytes >= 0x80 belong to non-ASCII characters, which are kept whole.
    !(b.is_ascii_alphanumeric() || *b >= 0x80)
}

impl Operator for SplitWords {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["split_on", "lowercase", "keyed"])?;
        let separator: fn(&u8) -> bool = match config.get("split_on").unwrap_or("whitespace") {
            "whitespace" => u8::is_ascii_whitespace,
            "non-alphanumeric" => is_separator_punct,
            other => {
                return Err(Error::BadConfig(format!(
                    "setting `split_on` = {other:?} is not valid (accepted: whitespace, non-alphanumeric)"
                )));
            }
        };
        Ok(SplitWords {
            separator: ByteSet::new(|b| separator(&b)),
            lowered: Vec::new(),
            lowercase: config.parse("lowercase")?.unwrap_or(false),
            keyed: config.parse("keyed")?.unwrap_or(true),
        })
    }

    fn process_batch(&mut self, input: Batch, out: &mut Output) -> Result<(), Error> {
        // Size the output once: text has a word every few bytes, and growing
        // the buffers word by word would copy them several times over.
        let bytes = input.values.len();
        let b = &mut out.batch;
        b.values.reserve(bytes);
        b.value_ends.reserve(bytes / 4);
        b.timestamps.reserve(bytes / 4);
        b.key_ends.reserve(bytes / 4);
        if self.keyed {
            b.keys.reserve(bytes);
            b.key_present.reserve(bytes / 4);
        }
        for record in input.iter() {
            self.process_record(record, out).map_err(Error::Failed)?;
        }
        Ok(())
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        for mut word in self.separator.split(record.value) {
            if self.lowercase {
                self.lowered.clear();
                self.lowered.extend(word.iter().map(u8::to_ascii_lowercase));
                word = &self.lowered;
            }
            out.emit(self.keyed.then_some(word), word, record.timestamp);
        }
        Ok(())
    }
}

export_operator!(SplitWords);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn splits_on_whitespace_and_keys_by_word() {
        let mut h = Harness::<SplitWords>::new(&[]).unwrap();
        let out = h
            .run(&Batch::from_values(["  the quick\tfox ", "", "fox"], 5))
            .unwrap();
        let words: Vec<_> = out
            .iter()
            .map(|r| (r.key.unwrap(), r.value, r.timestamp))
            .collect();
        assert_eq!(
            words,
            [
                (&b"the"[..], &b"the"[..], 5),
                (b"quick", b"quick", 5),
                (b"fox", b"fox", 5),
                (b"fox", b"fox", 5)
            ]
        );
    }

    #[test]
    fn lowercase_and_unkeyed() {
        let mut h =
            Harness::<SplitWords>::new(&[("lowercase", "true"), ("keyed", "false")]).unwrap();
        let out = h.run(&Batch::from_values(["The FOX"], 0)).unwrap();
        assert_eq!(
            out.iter().map(|r| (r.key, r.value)).collect::<Vec<_>>(),
            [(None, &b"the"[..]), (None, b"fox")]
        );
    }

    #[test]
    fn split_on_non_alphanumeric_drops_punctuation() {
        let mut h =
            Harness::<SplitWords>::new(&[("split_on", "non-alphanumeric"), ("keyed", "false")])
                .unwrap();
        assert_eq!(
            h.run_lines(&["It was -- in short, the café's \"best\"!"])
                .unwrap(),
            ["It", "was", "in", "short", "the", "café", "s", "best"]
        );
        let err = Harness::<SplitWords>::new(&[("split_on", "commas")])
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("whitespace, non-alphanumeric"),
            "{err}"
        );
    }

    #[test]
    fn bad_boolean_is_a_config_error() {
        let err = Harness::<SplitWords>::new(&[("lowercase", "yes")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }
}
