//! `POST /v1/sync` handles Zstandard itself (contexts kept per thread, `crate::body`):
//! request bodies in zstd, gzip or none are all read alike, and the answer is in the
//! encoding the device prefers, as the `CompressionLayer` of the other routes chooses it.

#[path = "common/inproc.rs"]
mod inproc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use fieldsync_core::fixtures::FixtureSize;
use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, SyncResponse};
use fieldsync_server::{AppState, Config};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use tower::ServiceExt as _;

/// Sends a first sync of rep-1's phone with `encoding` on the body and `accept` as
/// Accept-Encoding; returns the answer's Content-Encoding and decoded JSON.
async fn sync(router: &axum::Router, encoding: &str, accept: &str) -> (String, SyncResponse) {
    let json = serde_json::to_vec(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        ..Default::default()
    })
    .unwrap();
    let body = match encoding {
        "zstd" => zstd::encode_all(&json[..], 3).unwrap(),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&json).unwrap();
            e.finish().unwrap()
        }
        _ => json,
    };
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/sync")
        .header("authorization", "Bearer rep-token")
        .header("content-type", "application/json");
    if !encoding.is_empty() {
        req = req.header("content-encoding", encoding);
    }
    if !accept.is_empty() {
        req = req.header("accept-encoding", accept);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40003))));
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .map_or("", |v| v.to_str().unwrap())
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let plain = match got.as_str() {
        "zstd" => zstd::decode_all(&bytes[..]).unwrap(),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        _ => bytes.to_vec(),
    };
    (got, serde_json::from_slice(&plain).unwrap())
}

#[tokio::test]
async fn sync_bodies_and_answers_in_every_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = inproc::seeded_store(
        &dir.path().join("enc.db"),
        1,
        &FixtureSize {
            stores_per_territory: 2,
            products: 4,
            reps_per_territory: 1,
        },
    );
    let router = fieldsync_server::app(AppState::new(store, Config::default()));
    let cases = [
        ("zstd", "gzip, zstd", "zstd"),
        ("gzip", "zstd", "zstd"),
        ("", "gzip", "gzip"),
        ("zstd", "gzip, zstd;q=0.5", "gzip"),
        ("identity", "gzip;q=0.5, zstd;q=0.5", "zstd"),
        ("zstd", "", ""),
        ("", "identity", ""),
    ];
    let mut answers = Vec::new();
    for (body, accept, expected) in cases {
        let (got, resp) = sync(&router, body, accept).await;
        assert_eq!(got, expected, "body {body:?}, Accept-Encoding {accept:?}");
        // A first sync gets the reference data, whatever the encodings.
        assert!(resp.reference_data.is_some(), "body {body:?}");
        answers.push(resp.epoch);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1);
}
