//! Content-defined chunking (FastCDC 2020, normalization level 1) with a gear table seeded
//! from the repository key, so chunk boundaries reveal nothing about the content.

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
}

impl ChunkerParams {
    /// For file trees: 512 KiB / 1 MiB / 8 MiB, like restic's, so small files stay one chunk
    /// and the index stays small.
    pub const FILES: Self = Self {
        min_size: 512 * 1024,
        avg_size: 1024 * 1024,
        max_size: 8 * 1024 * 1024,
    };
    /// For database dump streams: 16 KiB / 64 KiB / 512 KiB. Repeated dumps differ in many
    /// small scattered places; on the measured dump series (`bench/chunk-sizes`) a 64 KiB
    /// average stores about half of what 256 KiB stores and a third of what 1 MiB stores,
    /// at one index entry per 64 KiB.
    pub const STREAMS: Self = Self {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 512 * 1024,
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
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(format!("invalid chunker sizes {min}/{avg}/{max}"))
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
                Normalization::Level1,
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
