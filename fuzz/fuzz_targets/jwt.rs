//! Token extraction and verification: any Authorization header, cookie, query string or
//! Sec-WebSocket-Protocol value is either a verified token or a typed refusal, never a panic; and a
//! token the fuzzer did not sign never verifies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use verb::{Claims, Jwt, JwtAuth, Request, TokenSource};

fuzz_target!(|data: &[u8]| {
    let jwt = Jwt::hs256("fuzzing secret that the input never learns").expect("a long secret");
    let auth = JwtAuth::<Claims>::new(jwt.clone()).sources([
        TokenSource::Bearer,
        TokenSource::Query("token".to_owned()),
        TokenSource::Cookie("session".to_owned()),
        TokenSource::Protocol,
    ]);
    let text = String::from_utf8_lossy(data);
    assert!(
        jwt.verify::<Claims>(&text).is_err(),
        "an unsigned token verified"
    );

    let parts: Vec<&str> = text.splitn(4, '\n').collect();
    let mut req = Request::builder().build();
    let names = ["authorization", "cookie", "sec-websocket-protocol"];
    for (name, value) in names.iter().zip(&parts) {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            req.headers_mut().insert(*name, value);
        }
    }
    if let Some(query) = parts.get(3) {
        if let Ok(uri) = format!("/ws?{query}").parse::<http::Uri>() {
            let mut builder = Request::builder().uri(&uri.to_string());
            for (name, value) in req.headers() {
                if let Ok(value) = value.to_str() {
                    builder = builder.header(name.as_str(), value);
                }
            }
            req = builder.build();
        }
    }
    assert!(
        auth.authenticate(&req).is_err(),
        "an unsigned token was accepted"
    );
});
