//! Route patterns and paths: registering any pattern either works or is a typed error, and matching
//! any path never panics; captured parameters are pieces of the path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use verb_router::{Method, Router};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Lines before an empty line are patterns, the rest are paths to match.
    let (patterns, paths) = text.split_once("\n\n").unwrap_or((&text, "/"));
    let mut router = Router::new();
    let methods = [Method::Get, Method::Post, Method::Delete];
    for (i, pattern) in patterns.lines().enumerate() {
        let result = if i % 4 == 3 {
            router.any(pattern, i)
        } else {
            router.route(methods[i % 3], pattern, i)
        };
        if let Err(err) = result {
            // Errors describe themselves without panicking.
            let _ = err.to_string();
        }
    }
    for (i, path) in paths.lines().enumerate() {
        let method = ["GET", "POST", "HEAD", "OPTIONS", "PATCH"][i % 5];
        if let Ok(found) = router.at(method, path) {
            for (name, value) in found.params.iter() {
                assert!(!name.is_empty());
                assert!(path.contains(value), "{value:?} is not part of {path:?}");
            }
        }
    }
    let _ = router.routes().count();
});
