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
    /// Compression failed.
    #[error("zstd compression: {0}")]
    Compress(std::io::Error),
}

/// Encodes `data` with zstd at `level`, or raw when that does not make it smaller.
/// Level 0 means "store raw".
pub fn encode(level: i32, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    if level != 0 && data.len() > 64 {
        let compressed = zstd::bulk::compress(data, level).map_err(CodecError::Compress)?;
        if compressed.len() < data.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(ZSTD);
            out.extend_from_slice(&compressed);
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(RAW);
    out.extend_from_slice(data);
    Ok(out)
}

/// Decodes a plaintext produced by [`encode`]. `size_hint` is the expected length, if known.
pub fn decode(mut encoded: Vec<u8>, size_hint: Option<usize>) -> Result<Vec<u8>, CodecError> {
    match encoded.first().copied() {
        None => Err(CodecError::Empty),
        Some(RAW) => {
            encoded.remove(0);
            Ok(encoded)
        }
        Some(ZSTD) => {
            let mut out = Vec::with_capacity(size_hint.unwrap_or(encoded.len() * 3));
            let mut decoder = zstd::stream::Decoder::new(&encoded[1..]).map_err(CodecError::Zstd)?;
            std::io::copy(&mut decoder, &mut out).map_err(CodecError::Zstd)?;
            Ok(out)
        }
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
    }
}
