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
