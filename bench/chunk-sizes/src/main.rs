//! Prints, for each FastCDC average chunk size, the share of a synthetic database dump
//! series that a deduplicating store keeps. The series is deterministic: six generations of
//! a tab-separated dump (2 M rows, about 166 MiB); each generation updates a growing set of
//! "hot" rows (100 new ones per generation, chosen at random), inserts 20 rows at random
//! places and appends 1 % new rows.

use std::collections::HashSet;

use fastcdc::v2020::{FastCDC, Normalization};

fn dump(rows: usize, hot: &HashSet<usize>, inserted: &HashSet<usize>, generation: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 90);
    for i in 0..rows {
        let balance = if hot.contains(&i) { (i as u64 * 31 + generation) % 100_000 } else { (i as u64 * 7) % 1000 };
        let line = format!(
            "{i}\tuser{i}@example.com\t{balance}\t2026-11-{:02} 10:{:02}:00\tsome filler text for row {i}\n",
            i % 28 + 1,
            i % 60
        );
        out.extend_from_slice(line.as_bytes());
        if inserted.contains(&i) {
            out.extend_from_slice(format!("{i}x\tnew@example.com\t{generation}\t2026-11-24\tinserted\n").as_bytes());
        }
    }
    out
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if !files.is_empty() {
        return compare_files(&files);
    }
    let base_rows = 2_000_000;
    let mut state: u64 = 12345;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut hot, mut inserted) = (HashSet::new(), HashSet::new());
    let mut generations = Vec::new();
    for generation in 0..6u64 {
        let rows = base_rows + generation as usize * base_rows / 100;
        for _ in 0..rows / 20_000 {
            hot.insert((random() % rows as u64) as usize);
        }
        for _ in 0..rows / 100_000 {
            inserted.insert((random() % rows as u64) as usize);
        }
        generations.push(dump(rows, &hot, &inserted, generation));
    }
    let total: usize = generations.iter().map(Vec::len).sum();
    println!("series: {} generations, {} MiB in total", generations.len(), total >> 20);
    println!("| average | stored | chunks | unique |");
    println!("|---------|--------|--------|--------|");
    for avg in [8usize, 16, 32, 64, 128, 256, 512, 1024].map(|k| k * 1024) {
        let (mut seen, mut stored, mut chunks) = (HashSet::new(), 0usize, 0usize);
        for data in &generations {
            for c in FastCDC::with_level_and_seed(data, avg / 4, avg, avg * 8, Normalization::Level1, 99) {
                chunks += 1;
                if seen.insert(blake3::hash(&data[c.offset..c.offset + c.length])) {
                    stored += c.length;
                }
            }
        }
        println!(
            "| {:>4} KiB | {:>5.1} % | {chunks} | {} |",
            avg / 1024,
            100.0 * stored as f64 / total as f64,
            seen.len()
        );
    }
}

/// With dump files as arguments (oldest first): for each average size and normalization
/// level, the mean chunk length in the first file and the bytes of every later file that are
/// new (not in any earlier file), as a share of that file.
fn compare_files(files: &[String]) {
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    println!("| average | level | mean chunk (first file) | new bytes in each later file |");
    println!("|---|---|---|---|");
    for avg in [16usize, 32, 64].map(|k| k * 1024) {
        for (name, level) in [("1", Normalization::Level1), ("2", Normalization::Level2), ("3", Normalization::Level3)] {
            let mut seen = HashSet::new();
            let mut shares = Vec::new();
            let mut mean = 0;
            for (i, d) in data.iter().enumerate() {
                let (mut new, mut count) = (0usize, 0usize);
                for c in FastCDC::with_level_and_seed(d, avg / 4, avg, avg * 8, level, 99) {
                    count += 1;
                    if seen.insert(blake3::hash(&d[c.offset..c.offset + c.length])) {
                        new += c.length;
                    }
                }
                if i == 0 {
                    mean = d.len() / count.max(1);
                } else {
                    shares.push(format!("{:.2} %", 100.0 * new as f64 / d.len() as f64));
                }
            }
            println!("| {} KiB | {name} | {} KiB | {} |", avg / 1024, mean / 1024, shares.join(", "));
        }
    }
}
