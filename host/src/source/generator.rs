//! The generator source: deterministic synthetic records at a chosen rate.

use super::Lines;
use super::position::{Position, Span};
use crate::model::batch::Batch;
use crate::model::time::now_ms;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Records per chunk when generating at full speed.
const CHUNK: u64 = 4096;

/// Makes record `i` the same way on every run: words drawn from a fixed
/// vocabulary by a counter-based PRNG seeded with `seed`.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    value_size: usize,
    keys: Option<u64>,
}

impl Generator {
    /// A generator of values of about `value_size` bytes, keyed `key-N` with
    /// `N < keys` when `keys` is set.
    pub fn new(seed: u64, value_size: usize, keys: Option<u64>) -> Self {
        Generator {
            seed,
            value_size,
            keys,
        }
    }

    /// Appends record `i` to `out`.
    pub fn record(&self, i: u64, ts: i64, out: &mut Batch) {
        let mut state = splitmix(self.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut key_buf = [0u8; 24];
        let key = self.keys.map(|k| {
            let n = splitmix(state) % k.max(1);
            let len = write_key(&mut key_buf, n);
            &key_buf[..len]
        });
        let size = self.value_size;
        out.push_with(key, ts, |v| {
            let start = v.len();
            while v.len() - start < size {
                state = splitmix(state);
                if v.len() > start {
                    v.push(b' ');
                }
                push_word(v, state % VOCABULARY);
            }
            v.truncate(start + size);
        });
    }

    /// Sends records `from` to `records` (forever when `None`) at `rate`
    /// per second (full speed when `None`), until `stop`.
    pub(crate) async fn run(
        &self,
        from: u64,
        records: Option<u64>,
        rate: Option<u64>,
        tx: &mpsc::Sender<Lines>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let total = records.unwrap_or(u64::MAX);
        let start = Instant::now();
        let mut next = from;
        while next < total {
            if *stop.borrow() {
                return;
            }
            let due = match rate {
                None => (next + CHUNK).min(total),
                Some(r) => {
                    let elapsed = start.elapsed().as_secs_f64();
                    (from + (elapsed * r as f64) as u64 + 1).min(total)
                }
            };
            if due <= next {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    _ = crate::signal::stopped(stop) => return,
                }
                continue;
            }
            let end = due.min(next + CHUNK);
            let mut chunk = Batch::new();
            let ts = now_ms();
            for i in next..end {
                self.record(i, ts, &mut chunk);
            }
            let span = Span {
                start: Position::Generator { next },
                end: Position::Generator { next: end },
            };
            next = end;
            let lines = Lines {
                records: chunk,
                span: Some(span),
            };
            if tx.send(lines).await.is_err() {
                return;
            }
        }
    }
}

/// Distinct words the generator draws from.
pub const VOCABULARY: u64 = 1000;

fn push_word(v: &mut Vec<u8>, mut n: u64) {
    // Words of 3 to 6 letters, a bijection of n.
    let len = 3 + (n % 4) as usize;
    n /= 4;
    for _ in 0..len {
        v.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
}

fn write_key(buf: &mut [u8; 24], n: u64) -> usize {
    let digits = n.to_string();
    buf[..4].copy_from_slice(b"key-");
    buf[4..4 + digits.len()].copy_from_slice(digits.as_bytes());
    4 + digits.len()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sized_and_keyed() {
        let g = Generator::new(7, 100, Some(10));
        let (mut a, mut b) = (Batch::new(), Batch::new());
        for i in 0..50 {
            g.record(i, 0, &mut a);
            g.record(i, 0, &mut b);
        }
        assert_eq!(a, b);
        for r in a.iter() {
            assert_eq!(r.value.len(), 100);
            let k = std::str::from_utf8(r.key.unwrap()).unwrap();
            assert!(k.starts_with("key-") && k[4..].parse::<u64>().unwrap() < 10);
        }
        let other = Generator::new(8, 100, None);
        let mut c = Batch::new();
        other.record(0, 0, &mut c);
        assert_ne!(c.get(0).unwrap().value, a.get(0).unwrap().value);
        assert_eq!(c.get(0).unwrap().key, None);
    }
}
