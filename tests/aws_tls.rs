//! `esp-aws aws` over HTTPS: the server is verified against the bundled Amazon roots plus
//! `--ca-bundle` / `AWS_CA_BUNDLE`, never skipped, and an untrusted server is one sentence,
//! not retried.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::aws_util::*;

/// An HTTPS server for `localhost` whose certificate comes from a private CA; answers
/// every request with a DescribeEndpoint body. Returns its port, the CA's PEM and the
/// count of TLS connections accepted.
fn https_server() -> (u16, String, Arc<AtomicU32>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test Private Root");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName(
        "localhost".to_string().try_into().unwrap(),
    )];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = r#"{"endpointAddress":"a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"}"#;
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, ca.pem(), count)
}

#[test]
fn an_untrusted_server_is_refused_once_and_a_ca_bundle_trusts_it() {
    let (port, ca_pem, count) = https_server();
    let h = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}");
    let run = aws_run(h.path(), Some(&url), &["aws", "endpoint"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.why().starts_with(&format!(
            "error: the TLS connection to localhost:{port} failed: invalid peer certificate"
        )),
        "{}",
        run.why()
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a TLS refusal is not retried"
    );

    let bundle = h.path().join("private-root.pem");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let run = aws_run(
        h.path(),
        Some(&url),
        &["aws", "endpoint", "--ca-bundle", bundle.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    );

    // AWS_CA_BUNDLE as the AWS CLI reads it (with --refresh, so the server is asked).
    let run = aws_run(
        h.path(),
        Some(&url),
        &["aws", "endpoint", "--refresh"],
        &[("AWS_CA_BUNDLE", bundle.to_str().unwrap())],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let not_pem = h.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let run = aws_run(
        h.path(),
        Some(&url),
        &["aws", "endpoint", "--ca-bundle", not_pem.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        run.why(),
        format!(
            "error: the CA bundle {} holds no PEM certificate",
            not_pem.display()
        )
    );
}
