//! Zstandard for the bodies of `POST /v1/sync`, both ways, with the contexts kept per
//! thread. tower-http's layers (used for every other route) make a new Zstandard context
//! for each request and each answer, which cost more than compressing or decompressing a
//! typical push (`ZSTD_createCCtx` + `ZSTD_createDCtx` were ~2 % of the server's CPU in
//! the ingest benchmark, ~2.5 % when apps push one change per request).

use std::cell::RefCell;

/// Level of the answers: what tower-http's `CompressionLayer` used (Zstandard's default).
const LEVEL: i32 = zstd::DEFAULT_COMPRESSION_LEVEL;

/// A request body's first bytes when it is a Zstandard frame.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::default();
}

#[derive(Default)]
struct Contexts {
    packer: Option<zstd::bulk::Compressor<'static>>,
    unpacker: Option<zstd::bulk::Decompressor<'static>>,
}

/// Why a body labelled `Content-Encoding: zstd` was not taken.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// It decompresses to more than the limit.
    TooLarge,
    /// It is not a Zstandard frame, or a broken one.
    Invalid(String),
}

/// The decompressed `body`, at most `limit` bytes.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    if !body.starts_with(&MAGIC) {
        return Err(Refused::Invalid("it is not Zstandard data".into()));
    }
    let size = zstd::zstd_safe::get_frame_content_size(body)
        .map_err(|_| Refused::Invalid("its Zstandard frame header is broken".into()))?;
    CONTEXTS.with_borrow_mut(|c| {
        let unpacker = match &mut c.unpacker {
            Some(u) => u,
            None => c.unpacker.insert(
                zstd::bulk::Decompressor::new().map_err(|e| Refused::Invalid(e.to_string()))?,
            ),
        };
        match size {
            Some(n) if n > limit as u64 => Err(Refused::TooLarge),
            // More frames than one, or a size that lies: decoded as a stream.
            Some(n) => unpacker
                .decompress(body, n as usize)
                .or_else(|_| streamed_within(body, limit)),
            // Streamed frames do not say their size: a first try with room for 32 times
            // the compressed size (JSON compresses 3-10×); if that fails, decode as a
            // stream up to one byte past the limit to tell a large body from a broken one
            // (Zstandard's error messages may be compiled out).
            None => {
                let first = body.len().saturating_mul(32).max(64 * 1024).min(limit);
                match unpacker.decompress(body, first) {
                    Ok(out) => Ok(out),
                    Err(_) => streamed_within(body, limit),
                }
            }
        }
    })
}

/// `body` decoded as a stream, refused past `limit` bytes (without holding more).
fn streamed_within(body: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    use std::io::Read as _;
    let invalid = |e: std::io::Error| Refused::Invalid(e.to_string());
    let mut out = Vec::new();
    zstd::stream::read::Decoder::with_buffer(body)
        .map_err(invalid)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if out.len() > limit {
        return Err(Refused::TooLarge);
    }
    Ok(out)
}

/// `body` compressed at [`LEVEL`]; `None` if Zstandard fails (answer it uncompressed).
pub fn compress(body: &[u8]) -> Option<Vec<u8>> {
    CONTEXTS.with_borrow_mut(|c| {
        let packer = match &mut c.packer {
            Some(p) => p,
            None => c.packer.insert(zstd::bulk::Compressor::new(LEVEL).ok()?),
        };
        packer.compress(body).ok()
    })
}

/// Whether an answer to a request with these `Accept-Encoding` values is best sent as
/// Zstandard: it is accepted (q > 0) and no encoding the server knows (gzip, identity) is
/// preferred over it — as tower-http's `CompressionLayer` chooses, which prefers Zstandard
/// on a tie.
pub fn accepts_zstd<'a>(accept_encoding: impl Iterator<Item = &'a str>) -> bool {
    let mut zstd: Option<u32> = None;
    let mut best_other = 0u32;
    for item in accept_encoding.flat_map(|v| v.split(',')) {
        let mut parts = item.splitn(2, ';');
        let name = parts.next().unwrap_or_default().trim();
        let q = match parts.next() {
            None => Some(1000),
            Some(p) => quality(p.trim()),
        };
        let Some(q) = q else { continue };
        if name.eq_ignore_ascii_case("zstd") {
            zstd = Some(zstd.map_or(q, |z| z.max(q)));
        } else if ["gzip", "x-gzip", "identity"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            best_other = best_other.max(q);
        }
    }
    zstd.is_some_and(|z| z > 0 && z >= best_other)
}

/// A `q=` value in thousandths (0-1000, at most three decimals); `None` if malformed.
fn quality(s: &str) -> Option<u32> {
    let v = s.strip_prefix("q=").or_else(|| s.strip_prefix("Q="))?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u32>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_within_the_limit() {
        let json = br#"{"protocol":1,"changes":[]}"#.repeat(1000);
        let packed = compress(&json).unwrap();
        assert!(packed.len() < json.len() / 10);
        assert_eq!(decompress(&packed, json.len()).unwrap(), json);
        // Streamed (no size in the frame), as clients' encoders write it.
        let streamed = zstd::encode_all(&json[..], 3).unwrap();
        assert_eq!(decompress(&streamed, json.len()).unwrap(), json);
        // Over a limit: refused, whether the frame says its size or not.
        assert_eq!(decompress(&packed, json.len() - 1), Err(Refused::TooLarge));
        assert_eq!(
            decompress(&streamed, json.len() - 1),
            Err(Refused::TooLarge)
        );
        // Two frames one after the other: both decoded.
        let two = [compress(b"{\"a\":").unwrap(), compress(b"1}").unwrap()].concat();
        assert_eq!(decompress(&two, 100).unwrap(), b"{\"a\":1}");
        // A bomb: 64 MiB of zeros in a few KB, against a 16 MiB limit.
        let bomb = zstd::encode_all(std::io::Read::take(std::io::repeat(0), 64 << 20), 19).unwrap();
        assert!(bomb.len() < 16 * 1024);
        assert_eq!(decompress(&bomb, 16 << 20), Err(Refused::TooLarge));
    }

    #[test]
    fn bodies_that_are_not_zstandard_are_refused() {
        assert!(matches!(
            decompress(b"{\"protocol\": 1}", 1 << 20),
            Err(Refused::Invalid(_))
        ));
        let mut broken = compress(&[7u8; 5000]).unwrap();
        let n = broken.len();
        broken.truncate(n - 3);
        assert!(matches!(
            decompress(&broken, 1 << 20),
            Err(Refused::Invalid(_))
        ));
    }

    #[test]
    fn zstd_is_chosen_as_compression_layer_would() {
        let yes = |h: &str| accepts_zstd(std::iter::once(h));
        assert!(yes("gzip, zstd"));
        assert!(yes("zstd"));
        assert!(yes("gzip;q=0.5, zstd;q=0.5"));
        assert!(yes("br, ZSTD;q=1.0"));
        assert!(!yes("gzip"));
        assert!(!yes(""));
        assert!(!yes("zstd;q=0"));
        assert!(!yes("gzip, zstd;q=0.9"));
        assert!(!yes("identity, zstd;q=0.5"));
        assert!(!yes("zstd;q=2"));
        assert!(!yes("zstd;q=0.1234"));
        assert!(accepts_zstd(["gzip;q=0.2", "zstd;q=0.3"].into_iter()));
    }
}
