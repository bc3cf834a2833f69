//! TLS of the sync client: rustls with the `ring` crypto provider, trusting the Mozilla
//! root certificates compiled into the library (`webpki-roots`) instead of the platform's
//! store.
//!
//! It needs no initialisation on any OS (Android's platform verifier would need a
//! `Context` through JNI) and trusts the same servers everywhere: those with a
//! certificate from a public CA, not a private CA or a user-installed certificate. ring
//! and the bundled roots are also far smaller than aws-lc (`docs/BENCHMARKS.md`, "Library
//! size").

use std::sync::Arc;

use crate::error::{Error, Result};

/// The client configuration handed to reqwest (`tls_backend_preconfigured`).
pub(crate) fn client_config() -> Result<rustls::ClientConfig> {
    config_with_roots(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
}

fn config_with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Network(format!("cannot configure TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::Mutex;

    #[test]
    fn bundles_the_public_roots() {
        let config = client_config().unwrap();
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    /// The same configuration, with a test CA added to its roots, completes a handshake
    /// and an HTTP/1.1 exchange through reqwest with a rustls server on 127.0.0.1.
    #[tokio::test]
    async fn talks_https_to_a_trusted_server() {
        let generated =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        let cert = generated.cert.der().clone();
        let key =
            rustls::pki_types::PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server = Arc::new(server);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(None::<(Option<Vec<u8>>, String)>));
        let record = seen.clone();
        std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = tls.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
            *record.lock().unwrap() = Some((alpn, String::from_utf8_lossy(&request).into()));
            tls.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            )
            .unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
        });

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config_with_roots(roots).unwrap())
            .build()
            .unwrap();
        let resp = http
            .get(format!("https://127.0.0.1:{port}/v1/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "hello");
        let (alpn, request) = seen.lock().unwrap().take().unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(
            request.starts_with("GET /v1/health HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
