//! The `http` example, run as a process, serves the routes of the catalogue.

use crate::support::{Example, request};

/// Every route of the `http` row of the catalogue, and a clean exit on SIGTERM.
#[tokio::test]
async fn http_example_serves_the_catalogue_routes() {
    let example = Example::start("http", &[]);
    let addr = example.addr;
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "--host defaults to 127.0.0.1"
    );

    let (status, body) = request(addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("<h1>"), "{body}");

    let (status, body) = request(addr, "GET", "/users/42", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"id":"42"}"#));

    let (status, body) = request(addr, "POST", "/echo", Some(r#"{"a":[1,true,null]}"#)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"a":[1,true,null]}"#));

    let (status, body) = request(addr, "POST", "/echo", Some("{oops")).await;
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["error"], "Bad Request");

    let (status, body) = request(addr, "GET", "/health", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let (status, _) = request(addr, "GET", "/nope", None).await;
    assert_eq!(status, 404);

    let status = example.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
