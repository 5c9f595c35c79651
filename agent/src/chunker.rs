//! Content-defined chunking (FastCDC 2020) with a gear table seeded from the repository key,
//! so chunk boundaries reveal nothing about the content.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};
use serde::{Deserialize, Serialize};

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk (except a file's last) is shorter.
    pub min_size: u32,
    /// Target average.
    pub avg_size: u32,
    /// No chunk is longer.
    pub max_size: u32,
    /// FastCDC normalization level (0–3): how strongly chunk lengths are pulled towards the
    /// average. Repositories written before this field existed used level 1.
    #[serde(default = "level_one")]
    pub normalization: u8,
}

fn level_one() -> u8 {
    1
}

impl ChunkerParams {
    /// For file trees: 512 KiB / 1 MiB / 8 MiB, like restic's, so small files stay one chunk
    /// and the index stays small.
    pub const FILES: Self = Self {
        min_size: 512 * 1024,
        avg_size: 1024 * 1024,
        max_size: 8 * 1024 * 1024,
        normalization: 1,
    };
    /// For database dump streams: 4 KiB / 16 KiB / 128 KiB, normalization level 3. Repeated
    /// dumps differ in many small scattered places, and rows of real tables are often
    /// repetitive (blank padding, sequences), which gives FastCDC few cut points and, at
    /// level 1, chunks several times the average. Measured in `agent/FORMAT.md` §6.
    pub const STREAMS: Self = Self {
        min_size: 4 * 1024,
        avg_size: 16 * 1024,
        max_size: 128 * 1024,
        normalization: 3,
    };

    /// Checks the limits of the FastCDC implementation.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid chunker parameters {min}/{avg}/{max}, normalization level {}",
                self.normalization
            ))
        }
    }
}

/// Splits a reader into chunks.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    /// Chunks `source` with `params` and the repository's `seed`.
    pub fn new(source: R, params: ChunkerParams, seed: u64) -> Self {
        Self {
            inner: StreamCDC::with_level_and_seed(
                source,
                params.min_size as usize,
                params.avg_size as usize,
                params.max_size as usize,
                match params.normalization {
                    0 => Normalization::Level0,
                    1 => Normalization::Level1,
                    2 => Normalization::Level2,
                    _ => Normalization::Level3,
                },
                seed,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next()? {
            Ok(chunk) => Some(Ok(chunk.data)),
            Err(e) => Some(Err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_and_respect_limits() {
        let mut data = vec![0u8; 3 * 1024 * 1024];
        crate::crypto::random_bytes(&mut data).unwrap();
        let params = ChunkerParams::STREAMS;
        params.validate().unwrap();
        ChunkerParams::FILES.validate().unwrap();
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], params, 7).map(Result::unwrap).collect();
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| c.len() <= params.max_size as usize));
        assert_eq!(chunks.concat(), data);
        let again: Vec<Vec<u8>> = Chunker::new(&data[..], params, 7).map(Result::unwrap).collect();
        assert_eq!(again, chunks, "chunking is deterministic");
    }
}
