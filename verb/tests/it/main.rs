//! Integration tests of the facade over real loopback sockets.

mod auth;
mod client;
mod deflate;
mod hostile;
mod http;
mod http2;
mod lifecycle;
mod limits;
mod metrics;
mod middleware;
mod raw;
mod rooms;
mod tls;
mod tower;
mod ws;
mod ws_raw;

/// The types users share across tasks are `Send + Sync`.
#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<verb::App>();
    assert_send_sync::<verb::ServerHandle>();
    assert_send_sync::<verb::Request>();
    assert_send_sync::<verb::Response>();
    assert_send_sync::<verb::HttpError>();
    assert_send_sync::<verb::Error>();
    assert_send_sync::<verb::test::TestServer>();
}
