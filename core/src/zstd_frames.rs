//! Zstandard frames with the contexts kept per thread: documents packed for storage
//! ([`crate::document::pack_document`]) and the server's sync bodies. Creating a context
//! costs more than compressing or decompressing a typical visit (`ZSTD_createDCtx` was
//! 2.8 % of a device's initial sync; `ZSTD_createCCtx` + `ZSTD_createDCtx` ~2.3 % of the
//! server's CPU when apps push one change per request).

use std::cell::RefCell;
use std::io::Read as _;

/// The first bytes of a Zstandard frame (Automerge bytes start with `85 6f 4a 83`).
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why bytes were not decompressed.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// They decompress to more than the limit.
    TooLarge,
    /// They are not Zstandard, or broken.
    Invalid(String),
}

#[derive(Default)]
struct Contexts {
    /// One compressor per level used on this thread (two in practice).
    packers: Vec<(i32, zstd::bulk::Compressor<'static>)>,
    unpacker: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::default();
}

/// `bytes` as one frame compressed at `level` (which says its size); `None` if Zstandard
/// fails.
pub fn compress(bytes: &[u8], level: i32) -> Option<Vec<u8>> {
    CONTEXTS.with_borrow_mut(|c| {
        let i = match c.packers.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                c.packers
                    .push((level, zstd::bulk::Compressor::new(level).ok()?));
                c.packers.len() - 1
            }
        };
        c.packers[i].1.compress(bytes).ok()
    })
}

/// The decompressed `bytes`, at most `limit` bytes (never holding more). Frames that say
/// their size are decompressed in one call; streamed frames get a first try with room for
/// 32 times their size (JSON compresses 3-10×). Whatever that does not decode (several
/// frames, a size that lies, a larger body) is decoded as a stream up to one byte past the
/// limit, which tells a large body from a broken one (Zstandard's error messages may be
/// compiled out).
pub fn decompress_within(bytes: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    if !bytes.starts_with(&MAGIC) {
        return Err(Refused::Invalid("it is not Zstandard data".into()));
    }
    let size = zstd::zstd_safe::get_frame_content_size(bytes)
        .map_err(|_| Refused::Invalid("its Zstandard frame header is broken".into()))?;
    let room = match size {
        Some(n) if n > limit as u64 => return Err(Refused::TooLarge),
        Some(n) => n as usize,
        None => bytes.len().saturating_mul(32).max(64 * 1024).min(limit),
    };
    let first = CONTEXTS.with_borrow_mut(|c| {
        let unpacker = match &mut c.unpacker {
            Some(u) => u,
            None => c.unpacker.insert(zstd::bulk::Decompressor::new().ok()?),
        };
        unpacker.decompress(bytes, room).ok()
    });
    match first {
        Some(out) => Ok(out),
        None => streamed_within(bytes, limit),
    }
}

fn streamed_within(bytes: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    let invalid = |e: std::io::Error| Refused::Invalid(e.to_string());
    let mut out = Vec::new();
    zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(invalid)?
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if out.len() > limit {
        return Err(Refused::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_within_the_limit() {
        let json = br#"{"protocol":1,"changes":[]}"#.repeat(1000);
        for level in [1, 3] {
            let packed = compress(&json, level).unwrap();
            assert!(packed.len() < json.len() / 10);
            assert_eq!(decompress_within(&packed, json.len()).unwrap(), json);
            assert_eq!(
                decompress_within(&packed, json.len() - 1),
                Err(Refused::TooLarge)
            );
        }
        // Streamed (no size in the frame), as clients' encoders write it.
        let streamed = zstd::encode_all(&json[..], 3).unwrap();
        assert_eq!(decompress_within(&streamed, json.len()).unwrap(), json);
        assert_eq!(
            decompress_within(&streamed, json.len() - 1),
            Err(Refused::TooLarge)
        );
        // Two frames one after the other: both decoded.
        let two = [
            compress(b"{\"a\":", 3).unwrap(),
            compress(b"1}", 3).unwrap(),
        ]
        .concat();
        assert_eq!(decompress_within(&two, 100).unwrap(), b"{\"a\":1}");
        // A bomb: 64 MiB of zeros in a few KB, against a 16 MiB limit.
        let bomb = zstd::encode_all(std::io::repeat(0).take(64 << 20), 19).unwrap();
        assert!(bomb.len() < 16 * 1024);
        assert_eq!(decompress_within(&bomb, 16 << 20), Err(Refused::TooLarge));
    }

    #[test]
    fn bytes_that_are_not_zstandard_are_refused() {
        assert!(matches!(
            decompress_within(b"{\"protocol\": 1}", 1 << 20),
            Err(Refused::Invalid(_))
        ));
        let mut broken = compress(&[7u8; 5000], 3).unwrap();
        let n = broken.len();
        broken.truncate(n - 3);
        assert!(matches!(
            decompress_within(&broken, 1 << 20),
            Err(Refused::Invalid(_))
        ));
    }
}
