use crate::{Allow, Method, Miss, RouteError, Router};

fn allow_of<T>(miss: Result<crate::Match<'_, '_, T>, Miss>) -> Allow {
    match miss {
        Err(Miss::MethodNotAllowed { allow }) => allow,
        Err(other) => panic!("expected 405, got {other:?}"),
        Ok(found) => panic!("expected 405, got a match on {}", found.pattern),
    }
}

fn invalid_reason(result: Result<(), RouteError>) -> (String, String) {
    match result {
        Err(RouteError::Invalid { route, reason }) => (route, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn express_params_are_captured_by_name() {
    let mut router = Router::new();
    router
        .route(Method::Get, "/users/:user_id/posts/:post", "post")
        .unwrap();

    let found = router.at("GET", "/users/ada/posts/17").unwrap();
    assert_eq!(*found.value, "post");
    assert_eq!(found.params.get("user_id"), Some("ada"));
    assert_eq!(found.params.get("post"), Some("17"));
    assert_eq!(found.params.get("missing"), None);
    assert_eq!(found.params.len(), 2);
    assert!(!found.params.is_empty());
    let pairs: Vec<_> = found.params.iter().collect();
    assert_eq!(pairs, [("user_id", "ada"), ("post", "17")]);
    assert_eq!(found.pattern, "/users/:user_id/posts/:post");
}

#[test]
fn express_param_keeps_literal_suffix_in_segment() {
    let mut router = Router::new();
    router.route(Method::Get, "/reports/:name.json", 1).unwrap();

    let found = router.at("GET", "/reports/q3.json").unwrap();
    assert_eq!(found.params.get("name"), Some("q3"));
    assert_eq!(
        router.at("GET", "/reports/q3.xml").unwrap_err(),
        Miss::NotFound
    );
}

#[test]
fn params_do_not_match_empty_segments() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", 1).unwrap();
    assert_eq!(router.at("GET", "/users/").unwrap_err(), Miss::NotFound);
    assert_eq!(router.at("GET", "/users").unwrap_err(), Miss::NotFound);
    assert_eq!(router.at("GET", "/users/1/").unwrap_err(), Miss::NotFound);
}

#[test]
fn colon_inside_a_segment_is_literal() {
    let mut router = Router::new();
    router.route(Method::Get, "/v1/jobs:run", 1).unwrap();
    assert!(router.at("GET", "/v1/jobs:run").is_ok());
    assert_eq!(
        router.at("GET", "/v1/jobsXrun").unwrap_err(),
        Miss::NotFound
    );
}

#[test]
fn matchit_syntax_is_accepted_as_is() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/{id}", "user").unwrap();
    router.route(Method::Get, "/img-{id}.png", "image").unwrap();
    router
        .route(Method::Get, "/assets/{*path}", "asset")
        .unwrap();
    router.route(Method::Get, "/{{literal}}", "braces").unwrap();

    let found = router.at("GET", "/users/9").unwrap();
    assert_eq!(found.params.get("id"), Some("9"));
    assert_eq!(found.pattern, "/users/{id}");

    let found = router.at("GET", "/img-42.png").unwrap();
    assert_eq!(
        (*found.value, found.params.get("id")),
        ("image", Some("42"))
    );

    let found = router.at("GET", "/assets/js/app.js").unwrap();
    assert_eq!(found.params.get("path"), Some("js/app.js"));

    let found = router.at("GET", "/{literal}").unwrap();
    assert_eq!(*found.value, "braces");
    assert!(found.params.is_empty());
}

#[test]
fn express_and_matchit_spellings_share_one_pattern() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", "get").unwrap();
    router.route(Method::Post, "/users/{id}", "post").unwrap();

    let found = router.at("POST", "/users/1").unwrap();
    assert_eq!(*found.value, "post");
    assert_eq!(found.pattern, "/users/{id}");
    assert_eq!(router.at("GET", "/users/1").unwrap().pattern, "/users/:id");

    let err = router
        .route(Method::Get, "/users/{id}", "again")
        .unwrap_err();
    assert!(matches!(err, RouteError::Duplicate { .. }), "{err:?}");
}

#[test]
fn named_catch_all_takes_rest_of_path() {
    let mut router = Router::new();
    router.route(Method::Get, "/files/*rest", 1).unwrap();

    let found = router.at("GET", "/files/a/b/c.txt").unwrap();
    assert_eq!(found.params.get("rest"), Some("a/b/c.txt"));
    let found = router.at("GET", "/files/x").unwrap();
    assert_eq!(found.params.get("rest"), Some("x"));
    assert_eq!(router.at("GET", "/files/").unwrap_err(), Miss::NotFound);
    assert_eq!(router.at("GET", "/files").unwrap_err(), Miss::NotFound);
}

#[test]
fn bare_star_is_catch_all_named_wildcard() {
    let mut router = Router::new();
    router.route(Method::Get, "/spa/*", 1).unwrap();

    let found = router.at("GET", "/spa/deep/link").unwrap();
    assert_eq!(found.params.get("wildcard"), Some("deep/link"));
    assert_eq!(found.pattern, "/spa/*");
}

#[test]
fn root_catch_all_matches_everything_but_root() {
    let mut router = Router::new();
    router.route(Method::Get, "/*", "fallback").unwrap();
    router.route(Method::Get, "/", "root").unwrap();

    assert_eq!(*router.at("GET", "/").unwrap().value, "root");
    assert_eq!(*router.at("GET", "/x/y").unwrap().value, "fallback");
}

#[test]
fn static_segment_beats_param_and_catch_all() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", "by id").unwrap();
    router.route(Method::Get, "/users/me", "me").unwrap();
    router.route(Method::Get, "/*", "fallback").unwrap();

    assert_eq!(*router.at("GET", "/users/me").unwrap().value, "me");
    let found = router.at("GET", "/users/mel").unwrap();
    assert_eq!(*found.value, "by id");
    assert_eq!(found.params.get("id"), Some("mel"));
    assert_eq!(*router.at("GET", "/other").unwrap().value, "fallback");
}

#[test]
fn head_falls_back_to_get() {
    let mut router = Router::new();
    router.route(Method::Get, "/page", "get").unwrap();
    assert_eq!(*router.at("HEAD", "/page").unwrap().value, "get");
}

#[test]
fn explicit_head_beats_get() {
    let mut router = Router::new();
    router.route(Method::Get, "/page", "get").unwrap();
    router.route(Method::Head, "/page", "head").unwrap();
    assert_eq!(*router.at("HEAD", "/page").unwrap().value, "head");
    assert_eq!(*router.at("GET", "/page").unwrap().value, "get");
}

#[test]
fn head_prefers_get_over_any() {
    let mut router = Router::new();
    router.any("/page", "any").unwrap();
    router.route(Method::Get, "/page", "get").unwrap();
    assert_eq!(*router.at("HEAD", "/page").unwrap().value, "get");
    assert_eq!(*router.at("OPTIONS", "/page").unwrap().value, "any");
}

#[test]
fn any_serves_every_method_but_explicit_ones_win() {
    let mut router = Router::new();
    router.route(Method::Post, "/hook", "post").unwrap();
    router.any("/hook", "any").unwrap();

    assert_eq!(*router.at("POST", "/hook").unwrap().value, "post");
    for method in [
        "GET", "HEAD", "PUT", "DELETE", "TRACE", "PROPFIND", "get", "",
    ] {
        let found = router.at(method, "/hook").unwrap();
        assert_eq!(*found.value, "any", "method {method:?}");
    }
}

#[test]
fn method_not_allowed_lists_registered_methods_plus_head_sorted() {
    let mut router = Router::new();
    router.route(Method::Post, "/items", "post").unwrap();
    router.route(Method::Delete, "/items", "delete").unwrap();
    router.route(Method::Get, "/items", "get").unwrap();

    let allow = allow_of(router.at("PATCH", "/items"));
    assert_eq!(
        allow.iter().collect::<Vec<_>>(),
        [Method::Get, Method::Head, Method::Post, Method::Delete]
    );
    assert_eq!(allow.header_value(), "GET, HEAD, POST, DELETE");
    assert_eq!(allow.to_string(), "GET, HEAD, POST, DELETE");
    assert!(allow.contains(Method::Head));
    assert!(!allow.contains(Method::Patch));
    assert_eq!(allow.len(), 4);
}

#[test]
fn method_not_allowed_without_get_has_no_head() {
    let mut router = Router::new();
    router.route(Method::Put, "/doc", "put").unwrap();

    let allow = allow_of(router.at("HEAD", "/doc"));
    assert_eq!(allow.header_value(), "PUT");
    assert_eq!(
        router.at("HEAD", "/doc").unwrap_err().to_string(),
        "method not allowed; allowed: PUT"
    );
}

#[test]
fn explicit_head_and_get_appear_once_in_allow() {
    let mut router = Router::new();
    router.route(Method::Head, "/x", "head").unwrap();
    router.route(Method::Get, "/x", "get").unwrap();
    assert_eq!(
        allow_of(router.at("POST", "/x")).header_value(),
        "GET, HEAD"
    );
}

#[test]
fn unknown_or_lowercase_method_is_not_allowed_without_any() {
    let mut router = Router::new();
    router.route(Method::Get, "/x", "get").unwrap();

    for method in ["PROPFIND", "get", "Get", "", "GET ", "G\u{0}T"] {
        let allow = allow_of(router.at(method, "/x"));
        assert_eq!(allow.header_value(), "GET, HEAD", "method {method:?}");
    }
}

#[test]
fn method_parses_exact_uppercase_tokens_only() {
    for method in Method::ALL {
        assert_eq!(method.as_str().parse::<Method>(), Ok(method));
        assert_eq!(method.to_string(), method.as_str());
    }
    let err = "Post".parse::<Method>().unwrap_err();
    assert_eq!(err.as_str(), "Post");
    assert_eq!(err.to_string(), "unknown http method `Post`");
    assert!("PROPFIND".parse::<Method>().is_err());
}

#[test]
fn same_method_twice_is_duplicate() {
    let mut router = Router::new();
    router.route(Method::Get, "/x", 1).unwrap();
    router.route(Method::Post, "/x", 2).unwrap();

    let err = router.route(Method::Get, "/x", 3).unwrap_err();
    assert_eq!(
        err,
        RouteError::Duplicate {
            method: Some(Method::Get),
            route: "/x".to_owned()
        }
    );
    assert_eq!(err.to_string(), "GET /x is already registered");
    // The original value is untouched.
    assert_eq!(*router.at("GET", "/x").unwrap().value, 1);
}

#[test]
fn any_twice_is_duplicate() {
    let mut router = Router::new();
    router.any("/ws/:room", 1).unwrap();
    let err = router.any("/ws/:room", 2).unwrap_err();
    assert_eq!(
        err,
        RouteError::Duplicate {
            method: None,
            route: "/ws/:room".to_owned()
        }
    );
    assert_eq!(err.to_string(), "ANY /ws/:room is already registered");
}

#[test]
fn conflicting_params_name_both_routes_as_written() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", 1).unwrap();

    let err = router.route(Method::Post, "/users/:name", 2).unwrap_err();
    assert_eq!(
        err,
        RouteError::Conflict {
            route: "/users/:name".to_owned(),
            existing: "/users/:id".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "route `/users/:name` conflicts with existing route `/users/:id`"
    );
    // The failed registration left nothing behind.
    let allow = allow_of(router.at("POST", "/users/5"));
    assert_eq!(allow.header_value(), "GET, HEAD");
}

#[test]
fn conflicting_catch_alls_name_both_routes_as_written() {
    let mut router = Router::new();
    router.route(Method::Get, "/a/*x", 1).unwrap();
    let err = router.any("/a/*y", 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `/a/*y` conflicts with existing route `/a/*x`"
    );
}

#[test]
fn conflict_deeper_in_tree_names_user_route() {
    let mut router = Router::new();
    router
        .route(Method::Get, "/org/:org/repos/:repo", 1)
        .unwrap();
    router.route(Method::Get, "/org/:org/members", 2).unwrap();
    // Different names at the same position are fine in matchit 0.9...
    router.route(Method::Get, "/org/:name/settings", 3).unwrap();

    // ...but the same shape with other names is ambiguous.
    let err = router
        .route(Method::Post, "/org/:o/repos/:r", 4)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `/org/:o/repos/:r` conflicts with existing route `/org/:org/repos/:repo`"
    );
}

#[test]
fn prefix_and_suffix_param_conflict_names_the_real_culprit() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/me", 1).unwrap();
    router.route(Method::Get, "/img-{id}", 2).unwrap();

    // A suffixed parameter cannot share a segment position with a prefixed
    // one; matchit itself names an unrelated neighbour here.
    let err = router.route(Method::Get, "/:file.json", 3).unwrap_err();
    assert_eq!(
        err,
        RouteError::Conflict {
            route: "/:file.json".to_owned(),
            existing: "/img-{id}".to_owned()
        }
    );
    // Nothing was half-registered.
    assert_eq!(*router.at("GET", "/users/me").unwrap().value, 1);
    assert_eq!(*router.at("GET", "/img-7").unwrap().value, 2);
    assert_eq!(router.at("GET", "/a.json").unwrap_err(), Miss::NotFound);
}

#[test]
fn failed_registrations_leave_lookups_unchanged() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let pattern_parts = [
        "a", "b", ":x", ":y", "{z}", "img-{id}", ":f.json", "{g}.png", "*rest", "*", "me",
    ];
    let path_parts = ["a", "b", "me", "img-1", "q.json", "q.png", "zz", ""];

    let mut rejected = 0;
    for _round in 0..200 {
        let mut tried = Router::new();
        let mut accepted = Vec::new();
        for value in 0..8 {
            let depth = 1 + next(3);
            let pattern: String = (0..depth)
                .map(|_| format!("/{}", pattern_parts[next(pattern_parts.len())]))
                .collect();
            let method = Method::ALL[next(3)];
            match tried.route(method, &pattern, value) {
                Ok(()) => accepted.push((method, pattern, value)),
                Err(_) => rejected += 1,
            }
        }

        let mut clean = Router::new();
        for (method, pattern, value) in &accepted {
            clean.route(*method, pattern, *value).unwrap();
        }
        for _ in 0..50 {
            let depth = next(4);
            let path: String = (0..depth)
                .map(|_| format!("/{}", path_parts[next(path_parts.len())]))
                .collect();
            let method = Method::ALL[next(3)].as_str();
            let summarize = |r: Result<crate::Match<'_, '_, i32>, Miss>| {
                r.map(|m| {
                    let params: Vec<String> =
                        m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    (*m.value, params)
                })
            };
            assert_eq!(
                summarize(tried.at(method, &path)),
                summarize(clean.at(method, &path)),
                "{method} {path} with {accepted:?}"
            );
        }
    }
    assert!(rejected > 100, "only {rejected} registrations failed");
}

#[test]
fn conflict_with_escaped_braces_names_user_route() {
    let mut router = Router::new();
    router.route(Method::Get, "/{{x}}/{id}", 1).unwrap();
    let err = router.route(Method::Get, "/{{x}}/:name", 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `/{{x}}/:name` conflicts with existing route `/{{x}}/{id}`"
    );
}

#[test]
fn invalid_patterns_are_rejected_with_reasons() {
    let cases = [
        ("", "must start with `/`"),
        ("users", "must start with `/`"),
        ("/users/:", "parameter name"),
        ("/users/:-x", "parameter name"),
        ("/files/*rest/more", "last segment"),
        ("/files/*/more", "last segment"),
        ("/files/*a.b", "catch-all name"),
        ("/users/{id", "unclosed `{`"),
        ("/users/id}", "unmatched `}`"),
        ("/users/{}", "empty name"),
        ("/files/{*}", "empty name"),
        ("/files/{*rest}/x", "end of the pattern"),
        ("/{a}-{b}", "one parameter"),
        ("/:id/:id", "used twice"),
        ("/{a*}", "may not contain `*`"),
    ];
    for (pattern, expected) in cases {
        let mut router = Router::<()>::new();
        let (route, reason) = invalid_reason(router.route(Method::Get, pattern, ()));
        assert_eq!(route, pattern);
        assert!(
            reason.contains(expected),
            "{pattern:?}: reason {reason:?} lacks {expected:?}"
        );
        assert_eq!(router.routes().count(), 0);
    }
}

#[test]
fn invalid_message_names_route_and_reason() {
    let mut router = Router::new();
    let err = router.route(Method::Get, "nope", ()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid route `nope`: pattern must start with `/`"
    );
}

#[test]
fn too_many_params_is_invalid_not_a_panic() {
    let at_limit: String = (0..25).map(|i| format!("/:p{i}")).collect();
    let over_limit: String = (0..26).map(|i| format!("/:p{i}")).collect();

    let mut router = Router::new();
    router.route(Method::Get, &at_limit, ()).unwrap();
    let (_, reason) = invalid_reason(router.route(Method::Get, &over_limit, ()));
    assert!(reason.contains("too many parameters"), "{reason}");

    let path: String = (0..25).map(|i| format!("/v{i}")).collect();
    let found = router.at("GET", &path).unwrap();
    assert_eq!(found.params.len(), 25);
    assert_eq!(found.params.get("p24"), Some("v24"));
}

#[test]
fn percent_encoding_stays_raw_in_params() {
    let mut router = Router::new();
    router.route(Method::Get, "/search/:term", 1).unwrap();
    router.route(Method::Get, "/raw/*rest", 2).unwrap();

    let found = router.at("GET", "/search/caf%C3%A9%20au%2Flait").unwrap();
    assert_eq!(found.params.get("term"), Some("caf%C3%A9%20au%2Flait"));
    let found = router.at("GET", "/raw/%2e%2e/%").unwrap();
    assert_eq!(found.params.get("rest"), Some("%2e%2e/%"));
}

#[test]
fn hostile_lookups_never_panic() {
    let mut router = Router::new();
    router.route(Method::Get, "/", 0).unwrap();
    router.route(Method::Get, "/users/:id", 1).unwrap();
    router.route(Method::Get, "/users/me", 2).unwrap();
    router.route(Method::Get, "/img-{id}.png", 3).unwrap();
    router.route(Method::Get, "/data/:file.json", 4).unwrap();
    router.route(Method::Get, "/caf\u{e9}/:x", 5).unwrap();
    router.route(Method::Get, "/caf\u{e8}/:x\u{e9}", 6).unwrap();
    router.route(Method::Get, "/files/*rest", 7).unwrap();
    router.any("/ws/:room/x", 8).unwrap();

    let huge_slashes = "/".repeat(100_000);
    let huge_segment = format!("/users/{}", "a".repeat(100_000));
    let many_segments = "/a".repeat(50_000);
    let inputs = [
        "",
        "/",
        "//",
        "///users",
        "users/1",
        "*",
        "%",
        "/%",
        "/%%%",
        "/users/%",
        "/users/%00",
        "/users/\u{0}",
        "/users/1?x=1#frag",
        "/users//",
        "/data/.json",
        "/data/x.json/",
        "/img-.png",
        "/img-\u{e9}.png",
        "/caf\u{e9}",
        "/caf\u{e9}/\u{e8}",
        "/caf\u{e8}/\u{e9}\u{e9}",
        "/caf\u{e8}/\u{e9}",
        "/caf\u{e0}/x",
        "/data/\u{1F600}.json",
        "/files/",
        "/files//",
        "/ws/room",
        "/ws//x",
        "\\users\\1",
        "http://example.com/users/1",
        &huge_slashes,
        &huge_segment,
        &many_segments,
    ];
    let methods = ["GET", "HEAD", "POST", "", "get", "\u{0}", "M\u{e9}THOD"];
    for path in inputs {
        for method in methods {
            let _ = router.at(method, path);
        }
    }

    // A few of those do match, with the raw text as parameters.
    let found = router.at("GET", "/img-\u{e9}.png").unwrap();
    assert_eq!(found.params.get("id"), Some("\u{e9}"));
    let found = router.at("GET", "/caf\u{e8}/\u{e9}\u{e9}").unwrap();
    assert_eq!(found.params.get("x"), Some("\u{e9}"));
    assert_eq!(*router.at("GET", &huge_segment).unwrap().value, 1);
}

#[test]
fn generated_lookups_never_panic() {
    // A small deterministic generator, so the test needs no dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = [
        "/",
        "/",
        "a",
        "u",
        "users",
        "me",
        ".",
        "json",
        ".png",
        "img-",
        "%",
        "%2F",
        "\u{e9}",
        "\u{e8}",
        "caf",
        "\u{1F600}",
        "{",
        "}",
        "*",
        ":",
        "files",
        "\u{0}",
    ];

    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", 1).unwrap();
    router.route(Method::Get, "/users/me", 2).unwrap();
    router.route(Method::Get, "/img-{id}.png", 3).unwrap();
    router.route(Method::Get, "/data/:file.json", 4).unwrap();
    router.route(Method::Get, "/caf\u{e9}/:x", 5).unwrap();
    router.route(Method::Get, "/caf\u{e8}/:x\u{e9}", 6).unwrap();
    router.route(Method::Get, "/files/*rest", 7).unwrap();

    for _ in 0..20_000 {
        let len = (next() % 12) as usize;
        let path: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if let Ok(found) = router.at("GET", &path) {
            for (_, value) in found.params.iter() {
                assert!(path.contains(value));
            }
        }
    }
}

#[test]
fn registering_odd_but_valid_patterns_never_panics() {
    let mut router = Router::new();
    let patterns = [
        "/",
        "//",
        "/caf\u{e9}",
        "/caf\u{e8}",
        "/caf\u{e9}/:x",
        "/\u{1F600}/{id}",
        "/\u{1F601}/{id}",
        "/{{",
        "/}}",
        "/{{}}",
        "/a/:x\u{e9}",
        "/a/:x\u{e8}",
        "/%",
        "/*",
    ];
    for pattern in patterns {
        let _ = router.route(Method::Get, pattern, ());
        let _ = router.route(Method::Post, pattern, ());
        let _ = router.any(pattern, ());
    }
    assert!(router.at("GET", "/{").is_ok());
    assert!(router.at("GET", "/}").is_ok());
}

#[test]
fn trailing_slash_is_a_different_path() {
    let mut router = Router::new();
    router.route(Method::Get, "/about", 1).unwrap();
    assert_eq!(router.at("GET", "/about/").unwrap_err(), Miss::NotFound);
    router.route(Method::Get, "/about/", 2).unwrap();
    assert_eq!(*router.at("GET", "/about/").unwrap().value, 2);
}

#[test]
fn routes_lists_registrations_with_original_spelling() {
    let mut router = Router::new();
    router.route(Method::Get, "/users/:id", ()).unwrap();
    router.any("/ws/*", ()).unwrap();
    router.route(Method::Delete, "/users/{id}", ()).unwrap();

    let listed: Vec<_> = router.routes().map(|r| (r.method, r.pattern)).collect();
    assert_eq!(
        listed,
        [
            (Some(Method::Get), "/users/:id"),
            (Some(Method::Delete), "/users/{id}"),
            (None, "/ws/*"),
        ]
    );
    let debug = format!("{router:?}");
    assert!(debug.contains("GET /users/:id"), "{debug}");
    assert!(debug.contains("ANY /ws/*"), "{debug}");
}

#[test]
fn cloned_router_matches_independently() {
    let mut router = Router::new();
    router.route(Method::Get, "/a", 1).unwrap();
    let mut copy = router.clone();
    copy.route(Method::Get, "/b", 2).unwrap();

    assert!(copy.at("GET", "/a").is_ok());
    assert_eq!(router.at("GET", "/b").unwrap_err(), Miss::NotFound);
}

#[test]
fn empty_router_finds_nothing() {
    let router: Router<()> = Router::default();
    for path in ["", "/", "/x"] {
        assert_eq!(router.at("GET", path).unwrap_err(), Miss::NotFound);
    }
}

#[test]
fn allow_collects_sorted_and_deduplicated() {
    let allow: Allow = [Method::Trace, Method::Get, Method::Trace, Method::Options]
        .into_iter()
        .collect();
    assert_eq!(allow.header_value(), "GET, OPTIONS, TRACE");
    assert_eq!(allow.len(), 3);
    let none: Allow = std::iter::empty().collect();
    assert!(none.is_empty());
    assert_eq!(none.header_value(), "");
}
