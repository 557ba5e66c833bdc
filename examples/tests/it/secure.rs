//! `secure`: the basic echo over WSS, with a generated or a given certificate.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::Example;

/// Connects over TLS trusting `cert_pem`, then upgrades to WSS; checks the catalogue's messages.
async fn check_secure_echo(example: &Example, cert_pem: &[u8]) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem).expect("a PEM certificate"))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = || async {
        let tcp = TcpStream::connect(example.addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake with the example's certificate")
    };

    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/", connect().await)
        .await
        .expect("WSS upgrade");
    let welcome = ws.next().await.unwrap().unwrap();
    assert_eq!(welcome, Message::text("Secure WebSocket connected!"));
    ws.send(Message::text("hi")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("Secure echo: hi"));
    drop(ws);

    // The demo page over HTTPS.
    let mut tls = connect().await;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    let _ = tls.read_to_string(&mut page).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("wss"),
        "the page connects with wss:// over https"
    );
}

#[tokio::test]
async fn secure_example_with_a_generated_certificate() {
    let example = Example::start("secure", &[]);
    let cert_path = example
        .logs()
        .iter()
        .find_map(|line| {
            let rest = line.split("cert=").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .expect("the generated certificate's path is logged");
    let cert = std::fs::read(&cert_path).expect("the logged certificate file exists");
    check_secure_echo(&example, &cert).await;
    assert!(example.terminate().success());
}

#[tokio::test]
async fn secure_example_with_given_certificate_files() {
    let dir = std::env::temp_dir().join(format!("verb-secure-test-{}", std::process::id()));
    let dev = verb::DevCertificate::generate(["localhost"]).unwrap();
    let (cert, key) = dev.write_to(&dir).unwrap();
    let example = Example::start(
        "secure",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        !example
            .logs()
            .iter()
            .any(|line| line.contains("self-signed")),
        "a given certificate is used as is"
    );
    check_secure_echo(&example, dev.cert_pem().as_bytes()).await;
    assert!(example.terminate().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A missing certificate file stops the example at start with an error naming the file.
#[test]
fn secure_example_refuses_a_missing_certificate() {
    let output = std::process::Command::new(crate::support::binary("secure"))
        .args([
            "--port",
            "0",
            "--cert",
            "/nonexistent/cert.pem",
            "--key",
            "/nonexistent/key.pem",
        ])
        .output()
        .expect("the example runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}
