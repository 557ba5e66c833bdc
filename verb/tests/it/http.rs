//! Routing, request accessors and responses.

use serde::{Deserialize, Serialize};
use verb::prelude::*;
use verb::test::TestServer;

fn app() -> App {
    let mut app = verb::create_server();
    app.get("/", |_req| async { Response::html("<h1>home</h1>") });
    app.get("/users/:id", |req: Request| async move {
        Json(serde_json::json!({ "id": req.param("id") }))
    });
    app.get("/users/me", |_req| async { "me" });
    app.post("/users/:id", |req: Request| async move {
        format!("posted {}", req.param("id").unwrap_or_default())
    });
    app.get("/files/*rest", |req: Request| async move {
        req.param("rest").unwrap_or_default().to_owned()
    });
    app.get("/orgs/{org}/repos/{repo}", |req: Request| async move {
        format!(
            "{}/{}",
            req.param("org").unwrap_or_default(),
            req.param("repo").unwrap_or_default()
        )
    });
    app.get("/search", |req: Request| async move {
        #[derive(Deserialize)]
        struct Search {
            q: String,
            page: Option<u32>,
        }
        let search: Search = req.query_as()?;
        Ok::<_, HttpError>(Json(serde_json::json!({
            "q": search.q,
            "page": search.page,
            "token": req.query("token"),
        })))
    });
    app.post("/echo", |req: Request| async move {
        let value: serde_json::Value = req.json()?;
        Ok::<_, HttpError>(Json(value))
    });
    app.post("/notes", |req: Request| async move {
        #[derive(Deserialize, Serialize)]
        struct Note {
            title: String,
            stars: u8,
        }
        let note: Note = req.json()?;
        Ok::<_, HttpError>((StatusCode::CREATED, Json(note)))
    });
    app.get("/cookies", |req: Request| async move {
        format!("{:?} {:?}", req.cookie("session"), req.cookie("missing"))
    });
    app.get("/whoami", |req: Request| async move {
        req.remote_addr().ip().to_string()
    });
    app.get("/old", |_req| async { Response::redirect("/new") });
    app.all(
        "/any",
        |req: Request| async move { req.method().to_string() },
    );
    app
}

/// `/users/:id` captures the segment, and a static route beats the parameter.
#[tokio::test]
async fn express_params_are_captured_and_static_routes_win() {
    let server = TestServer::start(app()).await;
    let res = server.get("/users/42").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>(),
        serde_json::json!({ "id": "42" })
    );
    assert_eq!(server.get("/users/me").await.text(), "me");
}

/// Parameters are percent-decoded; catch-alls take the rest of the path; matchit syntax works too.
#[tokio::test]
async fn params_are_decoded_and_catch_all_and_brace_syntax_work() {
    let server = TestServer::start(app()).await;
    let res = server.get("/users/ada%20lovelace").await;
    assert_eq!(res.json::<serde_json::Value>()["id"], "ada lovelace");
    assert_eq!(server.get("/files/a/b/c.txt").await.text(), "a/b/c.txt");
    assert_eq!(
        server.get("/orgs/verb/repos/core").await.text(),
        "verb/core"
    );
}

/// A parameter that does not decode to UTF-8 is a 400 with a JSON error, not a panic.
#[tokio::test]
async fn undecodable_param_is_a_400() {
    let server = TestServer::start(app()).await;
    let res = server.get("/users/%FF").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<serde_json::Value>()["error"], "Bad Request");
}

/// Query parameters decode, both one by one and typed; a wrong type is a 400.
#[tokio::test]
async fn query_parameters_decode_and_deserialize() {
    let server = TestServer::start(app()).await;
    let res = server.get("/search?q=rust+web&page=2&token=a%2Fb").await;
    assert_eq!(
        res.json::<serde_json::Value>(),
        serde_json::json!({ "q": "rust web", "page": 2, "token": "a/b" })
    );
    let res = server.get("/search?q=x&page=two").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("invalid query string"),
        "{body}"
    );
}

/// JSON bodies round-trip; typed bodies too, with the status the handler chose.
#[tokio::test]
async fn json_round_trip() {
    let server = TestServer::start(app()).await;
    let value = serde_json::json!({ "a": [1, 2, { "b": null }], "s": "é" });
    let res = server.post("/echo").json(&value).send().await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json::<serde_json::Value>(), value);

    let note = serde_json::json!({ "title": "hi", "stars": 5 });
    let res = server.post("/notes").json(&note).send().await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<serde_json::Value>(), note);
}

/// Bad JSON gets a 400 whose JSON body names the problem.
#[tokio::test]
async fn bad_json_is_a_400_naming_the_problem() {
    let server = TestServer::start(app()).await;
    let res = server.post("/echo").body("{not json").send().await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json();
    assert_eq!(body["error"], "Bad Request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{body}"
    );

    let res = server
        .post("/notes")
        .json(&serde_json::json!({ "title": "x" }))
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing field `stars`"),
        "{body}"
    );

    let res = server
        .post("/notes")
        .json(&serde_json::json!({ "title": "x", "stars": 900 }))
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// An unknown path is a JSON 404.
#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let server = TestServer::start(app()).await;
    let res = server.get("/nope").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        res.json::<serde_json::Value>(),
        serde_json::json!({ "error": "Not Found", "message": "no route for GET /nope" })
    );
}

/// A known path with another method is a 405 listing the allowed methods.
#[tokio::test]
async fn wrong_method_is_a_405_with_allow() {
    let server = TestServer::start(app()).await;
    let res = server.request(Method::DELETE, "/users/1").send().await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(
        res.json::<serde_json::Value>()["error"],
        "Method Not Allowed"
    );
    assert_eq!(
        server.post("/users/7").send().await.text(),
        "posted 7",
        "the other method still routes"
    );
}

/// HEAD is served by the GET route, with its headers and no body.
#[tokio::test]
async fn head_is_served_by_get_without_a_body() {
    let server = TestServer::start(app()).await;
    let res = server.request(Method::HEAD, "/").send().await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.header("content-length"), Some("13"));
    assert!(res.bytes().is_empty());
}

/// `all` answers every method.
#[tokio::test]
async fn all_answers_every_method() {
    let server = TestServer::start(app()).await;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ] {
        let res = server.request(method.clone(), "/any").send().await;
        assert_eq!(res.text(), method.as_str());
    }
}

/// Cookies, the peer address and redirects.
#[tokio::test]
async fn cookies_remote_addr_and_redirect() {
    let server = TestServer::start(app()).await;
    let res = server
        .request(Method::GET, "/cookies")
        .header("cookie", "theme=dark; session=abc123")
        .send()
        .await;
    assert_eq!(res.text(), r#"Some("abc123") None"#);
    assert_eq!(server.get("/whoami").await.text(), "127.0.0.1");
    let res = server.get("/old").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.header("location"), Some("/new"));
}

/// Registering a route that conflicts with another panics with both routes named.
#[test]
fn conflicting_routes_name_both() {
    let result = std::panic::catch_unwind(|| {
        let mut app = verb::create_server();
        app.get("/users/:id", |_req| async { "a" });
        app.get("/users/:name", |_req| async { "b" });
    });
    let panic = result.expect_err("a conflicting route must panic");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(
        message.contains("/users/:name") && message.contains("/users/:id"),
        "{message}"
    );
}

/// `OriginPolicy` as route middleware guards a cookie-authenticated HTTP route from cross-site
/// requests (a form post from another site carries the cookie; CORS does not stop it being sent).
#[tokio::test]
async fn origin_policy_guards_a_cookie_authenticated_route() {
    let mut app = verb::create_server();
    app.post("/transfer", |req: Request| async move {
        format!("moved for {}", req.cookie("session").unwrap_or("nobody"))
    })
    .middleware(verb::OriginPolicy::same_origin().allow("https://bank.test"));
    let server = TestServer::start(app).await;
    let own = format!("http://{}", server.addr());
    let send = |origin: Option<&'static str>| {
        let mut req = server.post("/transfer").header("cookie", "session=ada");
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let refused = send(Some("https://evil.test")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.json::<serde_json::Value>()["error"], "Forbidden");
    assert_eq!(send(None).await.text(), "moved for ada");
    assert_eq!(
        send(Some("https://bank.test")).await.text(),
        "moved for ada"
    );
    let same = server
        .post("/transfer")
        .header("cookie", "session=ada")
        .header("origin", &own)
        .send()
        .await;
    assert_eq!(same.text(), "moved for ada");
    server.stop().await;
}
