//! Zstandard for the answers of `POST /v1/sync` (its request bodies are decompressed by
//! [`fieldsync_core::zstd_frames::decompress_within`]), both with the contexts kept per
//! thread ([`fieldsync_core::zstd_frames`], which also packs stored documents).
//! tower-http's layers (used for every other route) make a new Zstandard context for each
//! request and each answer, which cost more than compressing or decompressing a typical
//! push (`ZSTD_createCCtx` + `ZSTD_createDCtx` were ~1.1 % of the server's samples in the
//! 100-device ingest, ~2.3 % when apps push one change per request).

use fieldsync_core::zstd_frames;

/// Level of the answers: what tower-http's `CompressionLayer` used (Zstandard's default).
const LEVEL: i32 = 3;

/// `body` compressed at `LEVEL`; `None` if Zstandard fails (answer it uncompressed).
pub fn compress(body: &[u8]) -> Option<Vec<u8>> {
    zstd_frames::compress(body, LEVEL)
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
