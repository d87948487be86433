//! Byte helpers that run 16 bytes at a time: a [`ByteSet`] classifies bytes
//! and splits text into the runs between its members, with Wasm `simd128`
//! when the component is built with it (as the plugin template is) and a
//! branch-free table elsewhere. Operators get vector speed without
//! intrinsics.
//!
//! ```
//! use sluice_sdk::bytes::ByteSet;
//!
//! let spaces = ByteSet::ascii_whitespace();
//! let words: Vec<&[u8]> = spaces.split(b"  the quick\tfox ").collect();
//! assert_eq!(words, [&b"the"[..], b"quick", b"fox"]);
//! ```

/// A set of byte values.
///
/// Sets whose members fall into at most 8 distinct patterns of low nibbles
/// (one per group of high nibbles; every ASCII character class does) are
/// tested with a vector table lookup; others with a 256-entry table, with
/// the same results.
#[derive(Clone)]
pub struct ByteSet {
    member: [bool; 256],
    /// Nibble tables of the vector test: byte `b` is a member when
    /// `low[b & 15] & high[b >> 4] != 0`. `None` when the set does not fit.
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_feature = "simd128")),
        allow(dead_code)
    )]
    nibbles: Option<([u8; 16], [u8; 16])>,
}

impl std::fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<u8> = (0..=255u8).filter(|&b| self.contains(b)).collect();
        f.debug_struct("ByteSet")
            .field("members", &members)
            .finish()
    }
}

impl ByteSet {
    /// The bytes for which `is_member` holds.
    pub fn new(is_member: impl Fn(u8) -> bool) -> Self {
        let member: [bool; 256] = std::array::from_fn(|b| is_member(b as u8));
        ByteSet {
            member,
            nibbles: nibble_tables(&member),
        }
    }

    /// ASCII whitespace as [`u8::is_ascii_whitespace`] defines it: space,
    /// tab, line feed, form feed and carriage return.
    pub fn ascii_whitespace() -> Self {
        Self::new(|b| b.is_ascii_whitespace())
    }

    /// Whether `b` is in the set.
    #[inline]
    pub fn contains(&self, b: u8) -> bool {
        self.member[b as usize]
    }

    /// The maximal non-empty runs of `bytes` containing no member of the
    /// set, in order: with a set of separators, the words of a text.
    pub fn split<'a>(&'a self, bytes: &'a [u8]) -> Split<'a> {
        let mut split = Split {
            set: self,
            bytes,
            base: 0,
            mask: 0,
            bit: 0,
        };
        split.mask = split.block_mask();
        split
    }

    /// One bit per byte of `chunk` (at most 64 bytes): set for members.
    #[inline]
    fn mask(&self, chunk: &[u8]) -> u64 {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if let (Some((low, high)), Ok(block)) = (&self.nibbles, chunk.try_into()) {
            return simd::mask64(block, low, high);
        }
        let mut mask = 0u64;
        for (i, &b) in chunk.iter().enumerate() {
            mask |= u64::from(self.member[b as usize]) << i;
        }
        mask
    }
}

/// The nibble tables for `member`, if its members have at most 8 distinct
/// patterns of low nibbles across the 16 high nibbles.
fn nibble_tables(member: &[bool; 256]) -> Option<([u8; 16], [u8; 16])> {
    let mut patterns: Vec<u16> = Vec::new();
    let (mut low, mut high) = ([0u8; 16], [0u8; 16]);
    for h in 0..16 {
        let pattern = (0..16).fold(0u16, |p, l| p | (u16::from(member[h * 16 + l]) << l));
        if pattern == 0 {
            continue;
        }
        let bucket = match patterns.iter().position(|&p| p == pattern) {
            Some(i) => i,
            None if patterns.len() < 8 => {
                patterns.push(pattern);
                patterns.len() - 1
            }
            None => return None,
        };
        high[h] |= 1 << bucket;
        for (l, low) in low.iter_mut().enumerate() {
            if pattern & (1 << l) != 0 {
                *low |= 1 << bucket;
            }
        }
    }
    Some((low, high))
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// The member bits of 64 bytes, 16 at a time: two table lookups by
    /// nibble, and a byte is a member where both share a bucket bit.
    #[inline]
    pub(super) fn mask64(block: &[u8; 64], low: &[u8; 16], high: &[u8; 16]) -> u64 {
        // SAFETY: `low` and `high` are 16 bytes; unaligned loads are
        // allowed in Wasm.
        let (low, high) = unsafe {
            (
                v128_load(low.as_ptr().cast()),
                v128_load(high.as_ptr().cast()),
            )
        };
        let nibble = u8x16_splat(0x0f);
        let mut mask = 0u64;
        for i in 0..4 {
            // SAFETY: bytes 16 * i .. 16 * i + 16 of the 64 in `block`.
            let v = unsafe { v128_load(block.as_ptr().add(16 * i).cast()) };
            let lo = u8x16_swizzle(low, v128_and(v, nibble));
            let hi = u8x16_swizzle(high, u8x16_shr(v, 4));
            let hit = u8x16_ne(v128_and(lo, hi), u8x16_splat(0));
            mask |= u64::from(u8x16_bitmask(hit)) << (16 * i);
        }
        mask
    }
}

/// The runs of a text between members of a [`ByteSet`] (see
/// [`ByteSet::split`]), found 64 bytes at a time through a bit mask.
pub struct Split<'a> {
    set: &'a ByteSet,
    bytes: &'a [u8],
    /// Where the current 64-byte block starts.
    base: usize,
    /// The block's member bits; bits past the end of the text are set.
    mask: u64,
    /// The next bit of the block to look at.
    bit: u32,
}

impl Split<'_> {
    /// The member bits of the block at `base`.
    fn block_mask(&self) -> u64 {
        let end = self.bytes.len().min(self.base + 64);
        let n = end - self.base;
        let past_end = if n == 64 { 0 } else { u64::MAX << n };
        self.set.mask(&self.bytes[self.base..end]) | past_end
    }

    /// Moves to the next block; false at the end of the text.
    #[inline]
    fn advance(&mut self) -> bool {
        self.base += 64;
        self.bit = 0;
        if self.base >= self.bytes.len() {
            return false;
        }
        self.mask = self.block_mask();
        true
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.base >= self.bytes.len() {
            return None;
        }
        // The run's first byte: the next byte that is not a member.
        let start = loop {
            let free = !self.mask & (u64::MAX << self.bit);
            if free != 0 {
                self.bit = free.trailing_zeros();
                break self.base + self.bit as usize;
            }
            if !self.advance() {
                return None;
            }
        };
        // Its end: the next member, or the end of the text.
        loop {
            let members = self.mask & (u64::MAX << self.bit);
            if members != 0 {
                self.bit = members.trailing_zeros();
                let end = (self.base + self.bit as usize).min(self.bytes.len());
                return Some(&self.bytes[start..end]);
            }
            if !self.advance() {
                return Some(&self.bytes[start..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain re-computation: scan byte by byte.
    fn runs<'a>(bytes: &'a [u8], is_member: &dyn Fn(u8) -> bool) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, &b) in bytes.iter().enumerate() {
            match (is_member(b), start) {
                (true, Some(s)) => {
                    out.push(&bytes[s..i]);
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push(&bytes[s..]);
        }
        out
    }

    /// A small deterministic generator (xorshift), so the test needs no crate.
    fn texts() -> impl Iterator<Item = Vec<u8>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b" \t\n\r\x0b\x0cab-Z09.,\xc3\xa9\xff\x00";
        (0..3000).map(move |i| {
            let len = i % 200;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly letters with separators among them, sometimes any byte.
                    if x.is_multiple_of(5) {
                        (x >> 8) as u8
                    } else {
                        alphabet[(x >> 16) as usize % alphabet.len()]
                    }
                })
                .collect()
        })
    }

    #[test]
    fn split_matches_a_byte_by_byte_scan() {
        let classes: [&dyn Fn(u8) -> bool; 4] = [
            &|b: u8| b.is_ascii_whitespace(),
            &|b: u8| !(b.is_ascii_alphanumeric() || b >= 0x80),
            &|b: u8| b == b',',
            // 16 distinct patterns of low nibbles: too many for the nibble tables.
            &|b: u8| b & 15 == b >> 4,
        ];
        for class in classes {
            let set = ByteSet::new(class);
            for b in 0..=255u8 {
                assert_eq!(set.contains(b), class(b));
            }
            for text in texts() {
                let got: Vec<&[u8]> = set.split(&text).collect();
                assert_eq!(got, runs(&text, class), "{text:?}");
            }
        }
    }

    #[test]
    fn character_classes_fit_the_nibble_tables() {
        assert!(ByteSet::ascii_whitespace().nibbles.is_some());
        assert!(
            ByteSet::new(|b| !(b.is_ascii_alphanumeric() || b >= 0x80))
                .nibbles
                .is_some()
        );
        assert!(ByteSet::new(|b| b & 15 == b >> 4).nibbles.is_none());
        // The tables say exactly what the set says.
        let set = ByteSet::new(|b| b.is_ascii_punctuation());
        let (low, high) = set.nibbles.unwrap();
        for b in 0..=255u8 {
            let hit = low[(b & 15) as usize] & high[(b >> 4) as usize] != 0;
            assert_eq!(hit, set.contains(b), "byte {b}");
        }
    }

    #[test]
    fn empty_and_all_member_texts() {
        let set = ByteSet::ascii_whitespace();
        assert_eq!(set.split(b"").count(), 0);
        assert_eq!(set.split(&[b' '; 130]).count(), 0);
        let long = vec![b'x'; 200];
        assert_eq!(set.split(&long).collect::<Vec<_>>(), [&long[..]]);
    }
}
