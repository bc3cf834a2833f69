//! TLS of the sync client (rustls with the ring provider and the Mozilla roots compiled
//! into the library): the client builds with no platform set-up, and a server whose
//! certificate no public CA signed is refused with a network error that says why, with
//! no panic and no completed handshake.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fieldsync_core::Error;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, SyncConfig, login};

/// A TLS server on 127.0.0.1 with a fresh self-signed certificate for 127.0.0.1. Returns
/// its port and the number of handshakes that completed.
fn self_signed_server() -> (u16, Arc<AtomicUsize>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key.into())
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let done = handshakes.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            // Blocking I/O until the handshake completes or the client aborts it.
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            if !conn.is_handshaking() {
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, handshakes)
}

fn assert_certificate_error(err: &Error) {
    let Error::Network(message) = err else {
        panic!("expected a network error, got {err:?}");
    };
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn a_server_certificate_from_no_public_ca_is_refused() {
    let (port, handshakes) = self_signed_server();
    let url = format!("https://127.0.0.1:{port}");

    let err = login(&url, "rep-1", "secret", "phone-1").await.unwrap_err();
    assert_certificate_error(&err);

    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("rep-1.db"), "rep-1", "phone-1").unwrap();
    let config = SyncConfig {
        max_attempts: 1,
        ..SyncConfig::default()
    };
    let client = SyncClient::with_config(&url, "token", config).unwrap();
    let err = client.sync(&store, None).await.unwrap_err();
    assert_certificate_error(&err);

    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

#[test]
fn the_client_builds_for_https_without_platform_setup() {
    // No crypto provider is installed process-wide: the client brings its own.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    SyncClient::new("https://sync.example.com", "token").unwrap();
    SyncClient::new("http://127.0.0.1:8080", "token").unwrap();
}
