//! Content-defined chunking (FastCDC 2020) with a gear table seeded from the repository key,
//! so chunk boundaries reveal nothing about the content.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};
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

    /// The normalization level as the `fastcdc` crate names it.
    fn level(&self) -> Normalization {
        match self.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        }
    }

    /// Checks the limits of the FastCDC implementation.
    pub fn validate(&self) -> Result<(), InvalidChunkerParams> {
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
        if ok { Ok(()) } else { Err(InvalidChunkerParams(*self)) }
    }
}

/// Chunker parameters outside the limits of the FastCDC implementation (a damaged config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid chunker parameters {}/{}/{}, normalization level {}",
    .0.min_size,
    .0.avg_size,
    .0.max_size,
    .0.normalization
)]
pub struct InvalidChunkerParams(pub ChunkerParams);

/// The smallest chunker buffer: stream chunks are small, and a buffer of 1.25 × their
/// maximum would be refilled (and its rest moved) every few chunks.
const MIN_BUFFER: usize = 1024 * 1024;

/// Splits readers into chunks with one buffer, reused for every reader: cuts are found by
/// the `fastcdc` crate's FastCDC 2020 ([`FastCDC::cut`]) on at least `max_size` bytes of
/// look-ahead (or what is left before the end), which gives exactly the cut points of its
/// `StreamCDC`, without a new `max_size` buffer per reader or a copy of the rest of the
/// buffer after every chunk.
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
    buffer: Vec<u8>,
}

/// Why chunking stopped: the reader failed, or the consumer of the chunks did.
#[derive(Debug)]
pub enum ChunkError<E> {
    /// Reading the source failed.
    Read(std::io::Error),
    /// The chunk consumer failed.
    Consumer(E),
}

impl Chunker {
    /// A chunker with `params` and the repository's `seed`. Its buffer (1.25 × `max_size`,
    /// at least 1 MiB) is allocated on first use and only touched as far as the data reaches.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        Self {
            params,
            seed,
            buffer: Vec::new(),
        }
    }

    /// Reads `source` to its end and passes every chunk, in order, to `each`; returns the
    /// number of bytes read.
    pub fn chunk<E>(
        &mut self,
        mut source: impl Read,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, ChunkError<E>> {
        let (min, avg, max) = (
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
        );
        let level = self.params.level();
        // Room for `max` bytes of look-ahead and at least as much again to cut from, so the
        // rest moved to the front at each refill is small against what was cut.
        let capacity = (max + max / 4).max(MIN_BUFFER);
        if self.buffer.len() < capacity {
            self.buffer.resize(capacity, 0);
        }
        let (mut start, mut end, mut eof, mut total) = (0, 0, false, 0u64);
        loop {
            // Refill: keep the unread rest, then read until the buffer is full or the end.
            self.buffer.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while !eof && end < capacity {
                match source.read(&mut self.buffer[end..capacity]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ChunkError::Read(e)),
                }
            }
            if end == 0 {
                return Ok(0);
            }
            let cdc = FastCDC::with_level_and_seed(&self.buffer[..end], min, avg, max, level, self.seed);
            while start < end && (eof || end - start >= max) {
                let (_, cut) = cdc.cut(start, end - start);
                each(&self.buffer[start..cut]).map_err(ChunkError::Consumer)?;
                start = cut;
            }
            if eof && start == end {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_those_of_streamcdc_and_the_buffer_is_reused() {
        let mut data = vec![0u8; 3 * 1024 * 1024 + 12345];
        crate::crypto::random_bytes(&mut data).unwrap();
        // Long runs of one byte reach the maximum chunk size.
        data[100_000..400_000].fill(7);
        for params in [ChunkerParams::STREAMS, ChunkerParams::FILES] {
            params.validate().unwrap();
            let mut chunker = Chunker::new(params, 7);
            for _ in 0..2 {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                let total = chunker
                    .chunk(&data[..], |c| {
                        chunks.push(c.to_vec());
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                assert_eq!(total, data.len() as u64);
                assert_eq!(chunks.concat(), data);
                assert!(chunks.iter().all(|c| c.len() <= params.max_size as usize));
                let expected: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                    &data[..],
                    params.min_size as usize,
                    params.avg_size as usize,
                    params.max_size as usize,
                    params.level(),
                    7,
                )
                .map(|c| c.unwrap().data)
                .collect();
                assert_eq!(chunks, expected, "the same cut points as StreamCDC");
            }
        }
    }

    #[test]
    fn parameters_outside_fastcdcs_limits_are_refused_and_named() {
        let level = ChunkerParams {
            normalization: 4,
            ..ChunkerParams::STREAMS
        };
        let error = level.validate().unwrap_err();
        assert_eq!(error, InvalidChunkerParams(level));
        assert_eq!(
            error.to_string(),
            "invalid chunker parameters 4096/16384/131072, normalization level 4"
        );
        for bad in [
            ChunkerParams {
                min_size: 4097,
                ..ChunkerParams::STREAMS
            },
            ChunkerParams {
                avg_size: 2 * 1024 * 1024,
                ..ChunkerParams::STREAMS
            },
            ChunkerParams {
                max_size: u32::MAX - 1,
                ..ChunkerParams::FILES
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_sources_and_read_errors() {
        let mut chunker = Chunker::new(ChunkerParams::STREAMS, 1);
        let mut count = 0;
        let total = chunker
            .chunk(&b""[..], |_| {
                count += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!((total, count), (0, 0));
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let error = chunker.chunk(Failing, |_| Ok::<(), ()>(())).unwrap_err();
        assert!(matches!(error, ChunkError::Read(e) if e.to_string() == "disk gone"));
    }
}
