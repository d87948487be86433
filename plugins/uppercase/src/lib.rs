//! `uppercase`: a map that upper-cases ASCII letters of each value.
//!
//! Keys, timestamps and headers pass through unchanged. Works on the whole batch at
//! once: the value buffer is converted in place, in one loop that the
//! compiler turns into SIMD code; record boundaries do not move, so the input
//! batch becomes the output batch without a copy.

use sluice_sdk::{Batch, Config, Error, Operator, Output, Record, export_operator};

/// Upper-cases ASCII letters of every value.
pub struct Uppercase;

impl Operator for Uppercase {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&[])?;
        Ok(Uppercase)
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        out.forward_with(record, |v| {
            let start = v.len();
            v.extend_from_slice(record.value);
            v[start..].make_ascii_uppercase();
        });
        Ok(())
    }

    fn process_batch(&mut self, mut input: Batch, out: &mut Output) -> Result<(), Error> {
        input.values.make_ascii_uppercase();
        out.batch = input;
        Ok(())
    }
}

export_operator!(Uppercase);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn uppercases_values_and_keeps_keys() {
        let mut h = Harness::<Uppercase>::new(&[]).unwrap();
        let mut input = Batch::new();
        input.push(Some(b"k"), b"hello, World 1", 7);
        input.push(None, "ünïcode ok".as_bytes(), 8);
        let out = h.run(&input).unwrap();
        let recs: Vec<_> = out.iter().collect();
        assert_eq!(recs[0].key, Some(&b"k"[..]));
        assert_eq!(recs[0].value, b"HELLO, WORLD 1");
        assert_eq!(recs[0].timestamp, 7);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].value, "üNïCODE OK".as_bytes());
    }

    #[test]
    fn batch_and_record_paths_agree() {
        let mut input = Batch::from_values(["abc", "", "Mixed Case"], 3);
        input.push(Some(b"k"), b"with headers", 4);
        input.push_header(b"trace", Some(b"t-1"));
        input.push_header(b"trace", None);
        input.push(None, b"after", 5);
        let mut h = Harness::<Uppercase>::new(&[]).unwrap();
        let fast = h.run(&input).unwrap();
        let mut slow = Output::with_capacity_for(&input);
        for r in input.iter() {
            h.operator().process_record(r, &mut slow).unwrap();
        }
        assert_eq!(fast, slow.finish().unwrap());
        let headers: Vec<_> = fast.get(3).unwrap().headers.iter().collect();
        assert_eq!(headers.len(), 2);
        assert_eq!(
            (headers[0].key, headers[0].value),
            (&b"trace"[..], Some(&b"t-1"[..]))
        );
        assert_eq!(headers[1].value, None);
        assert!(fast.get(4).unwrap().headers.is_empty());
    }

    #[test]
    fn refuses_settings() {
        assert!(matches!(
            Harness::<Uppercase>::new(&[("x", "1")]),
            Err(Error::BadConfig(_))
        ));
    }
}
