//! The one function that maps a key to a partition.
//!
//! Every part of Sluice that routes by key (the source partitioner, the
//! exchange between stages, keyed state, Kafka output) calls [`for_key`], so
//! a key lands on the same partition everywhere. The hash is Kafka's default
//! partitioner hash (murmur2, seed `0x9747b28c`, sign bit cleared), so
//! records keyed by Sluice and by a Kafka producer agree on partitions.

/// Kafka's murmur2 hash of `data`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition, in `0..partitions`, that owns `key`.
///
/// # Panics
/// If `partitions` is zero; job validation guarantees at least one.
pub fn for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a job has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Vectors from Kafka's own test suite (`UtilsTest.testMurmur2`).
    #[test]
    fn matches_kafka_murmur2() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data) as i32,
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    proptest! {
        #[test]
        fn every_key_maps_into_range(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..512) {
            prop_assert!(for_key(&key, n) < n);
        }

        #[test]
        fn mapping_is_a_pure_function(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..64) {
            prop_assert_eq!(for_key(&key, n), for_key(&key.clone(), n));
        }
    }

    /// Stable across runs and processes: pinned values, not just self-consistency.
    #[test]
    fn pinned_assignments() {
        let got: Vec<u32> = ["the", "quick", "brown", "fox", ""]
            .iter()
            .map(|k| for_key(k.as_bytes(), 8))
            .collect();
        let again: Vec<u32> = ["the", "quick", "brown", "fox", ""]
            .iter()
            .map(|k| (murmur2(k.as_bytes()) & 0x7fff_ffff) % 8)
            .collect();
        assert_eq!(got, again);
        assert_eq!(
            for_key(b"foobar", 10),
            (((-790332482i32) as u32) & 0x7fff_ffff) % 10
        );
    }

    #[test]
    fn balanced_over_many_keys() {
        let n = 8u32;
        let mut counts = vec![0u32; n as usize];
        for i in 0..80_000 {
            counts[for_key(format!("key-{i}").as_bytes(), n) as usize] += 1;
        }
        // Expect 10,000 each; allow 5% either way.
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "unbalanced: {c}");
        }
    }
}
