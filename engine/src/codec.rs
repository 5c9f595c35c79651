//! Compression of plaintexts before encryption: one codec byte, then the body.
//!
//! `0` = stored raw, `1` = zstd frame. Data that does not shrink is stored raw.

/// The codec byte of a raw body.
const RAW: u8 = 0;
/// The codec byte of a zstd frame.
const ZSTD: u8 = 1;

/// Errors decoding a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The plaintext is empty (no codec byte).
    #[error("empty plaintext (no codec byte)")]
    Empty,
    /// The codec byte is not one this version knows.
    #[error("unknown codec {0}")]
    Unknown(u8),
    /// The zstd frame is invalid.
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    /// The body decodes to more bytes than recorded (or than [`MAX_DOCUMENT`]).
    #[error("decodes to more than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// Compression failed.
    #[error("zstd compression: {0}")]
    Compress(std::io::Error),
}

/// Encodes `data` with zstd at `level`, or raw when that does not make it smaller.
/// Level 0 means "store raw".
pub fn encode(level: i32, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(data.len() + 1);
    encode_into(level, data, &mut out)?;
    Ok(out)
}

/// Like [`encode`], appending the codec byte and body to `out`. Compresses straight into
/// `out` with one compression context per thread (creating a zstd context per blob cost more
/// than compressing a small blob), so the only allocation is `out`'s growth. A separate
/// per-thread output buffer, dropped after chunks above 2 MiB, raised a tree backup's peak
/// RSS from 40 to 49–53 MiB (`bench/README.md`).
pub fn encode_into(level: i32, data: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    if level != 0 && data.len() > 64 {
        let written = COMPRESSOR.with(|cell| -> Result<usize, CodecError> {
            let mut slot = cell.borrow_mut();
            let compressor = match slot.as_mut() {
                Some((l, compressor)) if *l == level => compressor,
                _ => {
                    let compressor = zstd::bulk::Compressor::new(level).map_err(CodecError::Compress)?;
                    &mut slot.insert((level, compressor)).1
                }
            };
            // Room for the codec byte and the largest possible frame.
            out.resize(start + 1 + zstd::zstd_safe::compress_bound(data.len()), 0);
            out[start] = ZSTD;
            compressor
                .compress_to_buffer(data, &mut out[start + 1..])
                .map_err(CodecError::Compress)
        });
        match written {
            Ok(n) if n < data.len() => {
                out.truncate(start + 1 + n);
                return Ok(());
            }
            Ok(_) => out.truncate(start),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    out.reserve(data.len() + 1);
    out.push(RAW);
    out.extend_from_slice(data);
    Ok(())
}

/// Blobs recorded as at most this long are decoded into a buffer of their recorded size;
/// longer ones (never written by Hort, whose largest chunk is 8 MiB) are streamed, so a
/// damaged length cannot ask for a huge allocation.
const BULK_LIMIT: usize = 16 << 20;

thread_local! {
    /// The zstd compression context of this thread, with its level.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// The zstd decompression context of this thread, created on first use.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether a zstd frame decodes to more than `limit` bytes (decoding at most `limit + 1`).
fn frame_exceeds(frame: &[u8], limit: usize) -> bool {
    use std::io::Read;
    let Ok(decoder) = zstd::stream::Decoder::new(frame) else {
        return false;
    };
    let mut sink = std::io::sink();
    std::io::copy(&mut decoder.take(limit as u64 + 1), &mut sink).is_ok_and(|n| n > limit as u64)
}

/// Largest plaintext a metadata document (index file, snapshot, trailer, …) may decode to.
/// A decompression bomb in a damaged or hostile file stops here instead of exhausting memory.
pub const MAX_DOCUMENT: usize = 1 << 30;

/// Decodes a plaintext produced by [`encode`]. `size_hint` is the exact expected length when
/// known (blobs record it): a body that decodes to more bytes is refused as soon as it exceeds
/// it. Without a hint, the limit is [`MAX_DOCUMENT`].
pub fn decode(mut encoded: Vec<u8>, size_hint: Option<usize>) -> Result<Vec<u8>, CodecError> {
    let limit = size_hint.unwrap_or(MAX_DOCUMENT);
    match encoded.first().copied() {
        None => Err(CodecError::Empty),
        Some(RAW) => {
            if encoded.len() - 1 > limit {
                return Err(CodecError::TooLong { limit });
            }
            encoded.remove(0);
            Ok(encoded)
        }
        Some(ZSTD) => match size_hint {
            // Blobs: one reused decompression context per thread, straight into a buffer of
            // the recorded size (creating a context per blob cost more than decoding small
            // blobs). A frame that needs more room is an error.
            Some(limit) if limit <= BULK_LIMIT => DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                let decompressor = match slot.as_mut() {
                    Some(d) => d,
                    None => slot.insert(zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?),
                };
                let mut out = Vec::with_capacity(limit);
                match decompressor.decompress_to_buffer(&encoded[1..], &mut out) {
                    Ok(_) => Ok(out),
                    // Destination too small: the frame holds more than recorded.
                    Err(_) if out.capacity() == limit && frame_exceeds(&encoded[1..], limit) => {
                        Err(CodecError::TooLong { limit })
                    }
                    Err(e) => Err(CodecError::Zstd(e)),
                }
            }),
            _ => {
                use std::io::Read;
                let capacity = encoded.len().saturating_mul(3).min(BULK_LIMIT);
                let mut out = Vec::with_capacity(capacity);
                let decoder = zstd::stream::Decoder::new(&encoded[1..]).map_err(CodecError::Zstd)?;
                // One byte more than allowed tells "too long" from "exactly at the limit".
                decoder
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(CodecError::Zstd)?;
                if out.len() > limit {
                    return Err(CodecError::TooLong { limit });
                }
                Ok(out)
            }
        },
        Some(other) => Err(CodecError::Unknown(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_shrinks_and_round_trips() {
        let data = vec![b'a'; 100_000];
        let encoded = encode(3, &data).unwrap();
        assert_eq!(encoded[0], ZSTD);
        assert!(encoded.len() < 1000);
        assert_eq!(decode(encoded, None).unwrap(), data);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut data = vec![0u8; 10_000];
        crate::crypto::random_bytes(&mut data).unwrap();
        let encoded = encode(3, &data).unwrap();
        assert_eq!(encoded[0], RAW);
        assert_eq!(decode(encoded, Some(data.len())).unwrap(), data);
        assert!(matches!(decode(vec![9, 1], None), Err(CodecError::Unknown(9))));
        assert!(matches!(
            decode(encode(3, &data).unwrap(), Some(data.len() - 1)),
            Err(CodecError::TooLong { .. })
        ));
    }

    #[test]
    fn a_body_longer_than_recorded_is_refused() {
        let data = vec![0u8; 1 << 20];
        let encoded = encode(19, &data).unwrap();
        assert!(encoded.len() < 1000);
        assert!(matches!(
            decode(encoded.clone(), Some(4096)),
            Err(CodecError::TooLong { limit: 4096 })
        ));
        assert_eq!(decode(encoded, Some(data.len())).unwrap(), data);
    }
}
