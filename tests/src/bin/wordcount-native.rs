//! The word-count benchmark's native twin: the same job as
//! `benches/wordcount.sh` runs through Sluice — split each line of a file
//! on ASCII whitespace (`split-words`' default rule) and count each word —
//! as plain Rust on N threads (default 2, as the job's workers), the read
//! of the file included. Prints one JSON line: words, distinct words and
//! seconds.
//!
//!     wordcount-native FILE [THREADS]

use rustc_hash::FxHashMap;
use std::time::Instant;

fn count(text: &[u8]) -> FxHashMap<&[u8], u64> {
    let mut words: FxHashMap<&[u8], u64> = FxHashMap::default();
    for line in text.split(|b| *b == b'\n') {
        for word in line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
        {
            *words.entry(word).or_default() += 1;
        }
    }
    words
}

fn main() {
    // The allocator settings `sluice` runs with.
    sluice::exec::tune_allocator();
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: wordcount-native FILE [THREADS]");
    let threads: usize = args
        .next()
        .map_or(2, |t| t.parse().expect("THREADS is a number"));
    let started = Instant::now();
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Contiguous parts, cut at line ends.
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..=threads {
        let mut end = (text.len() * i / threads).max(start);
        while end < text.len() && text[end] != b'\n' {
            end += 1;
        }
        parts.push(&text[start..end]);
        start = end;
    }
    let counted: Vec<FxHashMap<&[u8], u64>> = std::thread::scope(|s| {
        let running: Vec<_> = parts.iter().map(|p| s.spawn(|| count(p))).collect();
        running
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let mut total = FxHashMap::default();
    for part in counted {
        for (word, n) in part {
            *total.entry(word).or_insert(0u64) += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let words: u64 = total.values().sum();
    println!(
        "{{\"words\": {words}, \"distinct\": {}, \"seconds\": {seconds:.4}, \"threads\": {threads}}}",
        total.len()
    );
}
