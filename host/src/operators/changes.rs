//! What an operator's state looks like to a checkpoint: a key-value space
//! of its own, written as the entries that changed since the last
//! checkpoint ([`StateWriter`], [`Changes`]), in a small binary form
//! ([`Encoder`], [`Decoder`]). The checkpoint store under it knows bytes
//! only, so a store larger than memory can later take its place.

/// Where an operator writes its state at a checkpoint.
pub trait StateWriter {
    /// `key` now holds `value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// `key` holds nothing any more.
    fn delete(&mut self, key: &[u8]);
}

/// The keys of an operator's state that changed since the last checkpoint.
/// Off (and free) until [`Changes::track`]: a job without checkpoints pays
/// nothing for it.
#[derive(Debug, Default)]
pub struct Changes {
    on: bool,
    keys: hashbrown::HashSet<Vec<u8>, rustc_hash::FxBuildHasher>,
    /// Where [`Changes::touch_built`] builds a key.
    scratch: Vec<u8>,
}

impl Changes {
    /// Starts recording changes.
    pub fn track(&mut self) {
        self.on = true;
    }

    /// Whether changes are recorded.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records that the entry `key` changed (was set, updated or removed).
    #[inline]
    pub fn touch(&mut self, key: &[u8]) {
        if self.on && !self.keys.contains(key) {
            self.keys.insert(key.to_vec());
        }
    }

    /// Records that the entry whose key `key` builds changed; `key` runs
    /// only when changes are recorded.
    #[inline]
    pub fn touch_with(&mut self, key: impl FnOnce() -> Vec<u8>) {
        if self.on {
            self.keys.insert(key());
        }
    }

    /// Records that the entry whose key `build` writes changed. The key is
    /// built in a buffer kept across calls, so a key already recorded costs
    /// no allocation; `build` runs only when changes are recorded.
    #[inline]
    pub fn touch_built(&mut self, build: impl FnOnce(&mut Encoder)) {
        if !self.on {
            return;
        }
        let mut key = Encoder(std::mem::take(&mut self.scratch));
        key.0.clear();
        build(&mut key);
        self.touch(&key.0);
        self.scratch = key.0;
    }

    /// The changed keys, forgotten as they are taken.
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        self.keys.drain().collect()
    }

    /// How many keys changed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Builds a state entry's key or value.
#[derive(Debug, Default)]
pub struct Encoder(pub Vec<u8>);

impl Encoder {
    /// An empty entry.
    pub fn new() -> Self {
        Encoder(Vec::new())
    }
    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an `f64`.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
        self
    }
    /// Appends a byte (an entry's kind).
    pub fn tag(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// Appends a `bool`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(u8::from(v));
        self
    }
    /// Appends bytes, with their length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    /// Appends optional bytes.
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.bool(false),
            Some(v) => self.bool(true).bytes(v),
        }
    }
    /// The entry.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads what an [`Encoder`] built; every read fails cleanly on bytes that
/// end too soon.
#[derive(Debug)]
pub struct Decoder<'a>(pub &'a [u8]);

/// The error of a state entry that does not decode.
pub fn corrupt(what: &str) -> super::OperatorError {
    super::OperatorError::Host(format!("the checkpointed state does not decode: {what}"))
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], super::OperatorError> {
        if self.0.len() < n {
            return Err(corrupt("an entry ends too soon"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64, super::OperatorError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// Reads an `i64`.
    pub fn i64(&mut self) -> Result<i64, super::OperatorError> {
        Ok(self.u64()? as i64)
    }
    /// Reads an `f64`.
    pub fn f64(&mut self) -> Result<f64, super::OperatorError> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// Reads a byte (an entry's kind).
    pub fn tag(&mut self) -> Result<u8, super::OperatorError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a `bool`.
    pub fn bool(&mut self) -> Result<bool, super::OperatorError> {
        Ok(self.take(1)?[0] != 0)
    }
    /// Reads bytes written with their length.
    pub fn bytes(&mut self) -> Result<&'a [u8], super::OperatorError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| corrupt("a length is too large"))?;
        self.take(n)
    }
    /// Reads optional bytes.
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, super::OperatorError> {
        Ok(if self.bool()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the checkpoint tests of the stateful operators share.
#[cfg(test)]
pub(crate) mod testing {
    use super::StateWriter;
    use crate::operators::Operator;
    use std::collections::HashMap;

    /// The store's view of one operator instance: every checkpoint's puts
    /// and deletes merged in order, as `state::entries::apply` merges them
    /// (that layer sits above this one, so the tests of operators cannot
    /// name it), with the changes of the last checkpoint counted.
    #[derive(Debug, Default)]
    pub(crate) struct Merged {
        pub(crate) entries: HashMap<Vec<u8>, Vec<u8>>,
        /// Puts of the last checkpoint.
        pub(crate) puts: usize,
        /// Deletes of the last checkpoint.
        pub(crate) deletes: usize,
    }

    impl StateWriter for Merged {
        fn put(&mut self, key: &[u8], value: &[u8]) {
            self.entries.insert(key.to_vec(), value.to_vec());
            self.puts += 1;
        }
        fn delete(&mut self, key: &[u8]) {
            self.entries.remove(key);
            self.deletes += 1;
        }
    }

    impl Merged {
        /// Takes a checkpoint of `op` and merges it in: returns its puts
        /// and deletes.
        pub(crate) fn checkpoint(&mut self, op: &mut dyn Operator) -> (usize, usize) {
            (self.puts, self.deletes) = (0, 0);
            op.checkpoint(self).expect("checkpoint");
            (self.puts, self.deletes)
        }

        /// The entries, as a restore takes them: in an order unrelated to
        /// the one they were written in (keys descending).
        pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut all: Vec<_> = self
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            all.sort_by(|a, b| b.0.cmp(&a.0));
            all
        }
    }

    /// A checkpoint [`resume_matches`] took of the reference instance.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Taken {
        /// After which step.
        pub(crate) step: usize,
        /// The entries of the merged state after it.
        pub(crate) entries: usize,
        /// Its puts.
        pub(crate) puts: usize,
        /// Its deletes.
        pub(crate) deletes: usize,
    }

    /// Runs `steps` through an instance `a` of `make` that tracks changes,
    /// taking a checkpoint after each step `checkpoint_after` picks. Before
    /// step `resume` (which must follow a checkpoint) it makes an instance
    /// `b` from the merged state and from then on runs every step through
    /// both, asserting that `run` gives the same for both (`a`, never
    /// stopped, is the reference), that `b`'s checkpoints write what `a`'s
    /// do, and that a checkpoint right after another writes nothing.
    /// Returns `a`'s checkpoints.
    pub(crate) fn resume_matches<S, R: PartialEq + std::fmt::Debug>(
        make: &dyn Fn() -> Box<dyn Operator>,
        steps: &[S],
        run: &dyn Fn(&mut dyn Operator, &S) -> R,
        checkpoint_after: &dyn Fn(usize) -> bool,
        resume: usize,
    ) -> Vec<Taken> {
        assert!(resume > 0 && checkpoint_after(resume - 1));
        let mut a = make();
        a.track_changes();
        let mut merged = Merged::default();
        let mut b: Option<(Box<dyn Operator>, Merged)> = None;
        let mut taken = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            if n == resume {
                let mut op = make();
                op.track_changes();
                op.restore_entries(&merged.entries()).expect("restore");
                let store = Merged {
                    entries: merged.entries.clone(),
                    ..Merged::default()
                };
                b = Some((op, store));
            }
            let out = run(&mut *a, step);
            if let Some((op, _)) = &mut b {
                assert_eq!(run(&mut **op, step), out, "step {n}: the resumed instance");
            }
            if !checkpoint_after(n) {
                continue;
            }
            let (puts, deletes) = merged.checkpoint(&mut *a);
            taken.push(Taken {
                step: n,
                entries: merged.entries.len(),
                puts,
                deletes,
            });
            assert_eq!(
                merged.checkpoint(&mut *a),
                (0, 0),
                "step {n}: nothing changed"
            );
            if let Some((op, store)) = &mut b {
                let written = store.checkpoint(&mut **op);
                assert_eq!(written, (puts, deletes), "step {n}: the resumed checkpoint");
                assert_eq!(store.entries, merged.entries, "step {n}: the resumed state");
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_as_encoded_and_short_ones_fail() {
        let bytes = Encoder::new()
            .u64(7)
            .i64(-3)
            .f64(1.5)
            .opt_bytes(Some(b"k"))
            .opt_bytes(None)
            .finish();
        let mut d = Decoder(&bytes);
        assert_eq!(d.u64().unwrap(), 7);
        assert_eq!(d.i64().unwrap(), -3);
        assert_eq!(d.f64().unwrap(), 1.5);
        assert_eq!(d.opt_bytes().unwrap(), Some(&b"k"[..]));
        assert_eq!(d.opt_bytes().unwrap(), None);
        assert!(d.is_empty());
        assert!(Decoder(&bytes[..5]).u64().is_err());
        let mut c = Changes::default();
        c.touch(b"a");
        assert!(c.is_empty(), "off until tracked");
        c.track();
        c.touch(b"a");
        c.touch(b"a");
        c.touch_with(|| b"b".to_vec());
        let mut keys = c.take();
        keys.sort();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
        assert!(c.is_empty());
    }
}
