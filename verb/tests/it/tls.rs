//! HTTPS and WSS with a real TLS client (tokio-rustls) trusting a generated development certificate.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as Tm;
use verb::prelude::*;
use verb::{DevCertificate, ServerHandle, TlsConfig, TlsError};

fn connector(dev: &DevCertificate) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(dev.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(dev: &DevCertificate, addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(dev)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// `GET path` over HTTPS with `connection: close`; the whole response as text.
async fn https_get(dev: &DevCertificate, addr: std::net::SocketAddr, path: &str) -> String {
    let mut tls = tls_connect(dev, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    // A peer closing without close_notify is reported as an error after the data; keep the data.
    let _ = tls.read_to_string(&mut response).await;
    response
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

async fn next(ws: &mut Wss) -> Tm {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("connection open")
        .expect("no error")
}

fn secure_app(dev: &DevCertificate) -> App {
    let mut app = verb::create_server_with(ServerProtocol::WebSockets);
    app.tls(dev.tls_config().unwrap());
    app.get("/hello", |_req| async { "hello over TLS" });
    app.websocket(
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_text("Secure WebSocket connected!");
            })
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    app
}

async fn start(app: App) -> ServerHandle {
    app.bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn https_and_wss_work_with_a_real_tls_client() {
    let dev = DevCertificate::generate(["localhost", "127.0.0.1"]).unwrap();
    let server = start(secure_app(&dev)).await;
    let response = https_get(&dev, server.local_addr(), "/hello").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("hello over TLS"), "{response}");

    let tls = tls_connect(&dev, server.local_addr()).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/", tls)
        .await
        .expect("WSS upgrade");
    assert_eq!(next(&mut ws).await, Tm::text("Secure WebSocket connected!"));
    // Small and large messages (larger than one TLS record and than the read chunk) echo intact.
    for size in [5usize, 20_000, 300_000] {
        let text = "x".repeat(size);
        ws.send(Tm::text(text.clone())).await.unwrap();
        let echoed = next(&mut ws).await;
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    // Many messages in flight at once.
    for i in 0..200 {
        ws.send(Tm::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..200 {
        let echoed = next(&mut ws).await;
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("m{i}"));
    }
    ws.close(None).await.unwrap();
    server.stop().await.unwrap();
}

/// Plain HTTP, garbage and a client that stalls mid-handshake are dropped without disturbing a TLS
/// client served at the same time.
#[tokio::test]
async fn failed_handshakes_do_not_disturb_other_clients() {
    let dev = DevCertificate::generate(["localhost"]).unwrap();
    let mut app = secure_app(&dev);
    app.tls(
        dev.tls_config()
            .unwrap()
            .handshake_timeout(Duration::from_millis(300)),
    );
    let server = start(app).await;
    let addr = server.local_addr();

    let mut staller = TcpStream::connect(addr).await.unwrap();
    staller.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello, then nothing
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();

    // A well-behaved client in the middle of all that.
    let response = https_get(&dev, addr, "/hello").await;
    assert!(response.ends_with("hello over TLS"), "{response}");

    for (name, stream) in [("plain", &mut plain), ("garbage", &mut garbage)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{name}: the server kept the connection open"));
        // The server answers with a TLS alert at most, never with HTTP, then closes.
        assert!(
            read.is_err() || !buf.starts_with(b"HTTP"),
            "{name}: {buf:?}"
        );
    }
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), staller.read_to_end(&mut buf))
        .await
        .expect("the stalled handshake was never dropped");
    assert!(started.elapsed() < Duration::from_secs(3));

    let response = https_get(&dev, addr, "/hello").await;
    assert!(response.ends_with("hello over TLS"), "{response}");
    server.stop().await.unwrap();
}

/// One app served as plain HTTP and over TLS at once.
#[tokio::test]
async fn plain_and_tls_listeners_side_by_side() {
    let dev = DevCertificate::generate(["localhost"]).unwrap();
    let server = secure_app(&dev).into_server().unwrap();
    let plain = server
        .clone()
        .without_tls()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let secure = server.bind("127.0.0.1:0").await.unwrap();

    let mut tcp = TcpStream::connect(plain.local_addr()).await.unwrap();
    tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.ends_with("hello over TLS"), "{response}");
    let response = https_get(&dev, secure.local_addr(), "/hello").await;
    assert!(response.ends_with("hello over TLS"), "{response}");
    plain.stop().await.unwrap();
    secure.stop().await.unwrap();
}

/// Bad certificate configuration gives an error that names the file and what is wrong.
#[test]
fn bad_certificate_configuration_is_reported_precisely() {
    let dir = std::env::temp_dir().join(format!("verb-tls-test-{}", std::process::id()));
    let one = DevCertificate::generate(["localhost"]).unwrap();
    let other = DevCertificate::generate(["localhost"]).unwrap();
    let (cert, key) = one.write_to(&dir).unwrap();

    let missing = dir.join("missing.pem");
    match TlsConfig::from_pem_files(&missing, &key) {
        Err(
            err @ TlsError::Read {
                what: "certificate",
                ..
            },
        ) => {
            assert!(err.to_string().contains("missing.pem"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    match TlsConfig::from_pem_files(&cert, &missing) {
        Err(TlsError::Read {
            what: "private key",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // The files swapped: no certificate in the key file.
    match TlsConfig::from_pem_files(&key, &cert) {
        Err(err @ TlsError::NoCertificate { .. }) => {
            assert!(err.to_string().contains("key.pem"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    match TlsConfig::from_pem(one.cert_pem().as_bytes(), one.cert_pem().as_bytes()) {
        Err(TlsError::NoPrivateKey { .. }) => {}
        other => panic!("{other:?}"),
    }
    match TlsConfig::from_pem(one.cert_pem().as_bytes(), other.key_pem().as_bytes()) {
        Err(TlsError::KeyMismatch { .. }) => {}
        other => panic!("{other:?}"),
    }
    let corrupt = one.cert_pem().replace('M', "!");
    assert!(TlsConfig::from_pem(corrupt.as_bytes(), one.key_pem().as_bytes()).is_err());
    assert!(TlsConfig::from_pem_files(&cert, &key).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Over TLS the request's own origin is `https://` + `Host`: a page served by this server passes,
/// the same host named with `http://` (another origin) is refused with 403.
#[tokio::test]
async fn over_tls_the_own_origin_is_https() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dev = DevCertificate::generate(["localhost", "127.0.0.1"]).unwrap();
    let server = start(secure_app(&dev)).await;
    let port = server.local_addr().port();
    let upgrade = |origin: String| {
        let dev = &dev;
        let addr = server.local_addr();
        async move {
            let mut request = format!("wss://localhost:{port}/")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
            let tls = tls_connect(dev, addr).await;
            match tokio_tungstenite::client_async(request, tls).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    response.status().as_u16()
                }
                Err(err) => panic!("handshake failed: {err}"),
            }
        }
    };
    assert_eq!(upgrade(format!("https://localhost:{port}")).await, 101);
    assert_eq!(upgrade(format!("http://localhost:{port}")).await, 403);
    server.stop().await.unwrap();
}
