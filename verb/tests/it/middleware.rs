//! Middleware order, early answers, post-processing and request extensions.

use std::sync::{Arc, Mutex};

use verb::prelude::*;
use verb::test::TestServer;

/// Pushes `name` to the log on the way in and out.
fn tracer(
    log: &Arc<Mutex<Vec<String>>>,
    name: &'static str,
) -> impl Fn(Request, Next) -> verb::BoxFuture<Response> + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |req, next| {
        let log = Arc::clone(&log);
        Box::pin(async move {
            log.lock().unwrap().push(format!("{name} in"));
            let res = next.run(req).await;
            log.lock().unwrap().push(format!("{name} out"));
            res
        })
    }
}

/// App middleware runs in registration order, then route middleware, then the handler, and unwinds in
/// reverse.
#[tokio::test]
async fn middleware_runs_in_registration_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut app = verb::create_server();
    app.middleware(tracer(&log, "first"));
    app.r#use(tracer(&log, "second"));
    let handler_log = Arc::clone(&log);
    app.get("/", move |_req| {
        let log = Arc::clone(&handler_log);
        async move {
            log.lock().unwrap().push("handler".into());
            "ok"
        }
    })
    .middleware(tracer(&log, "route"));
    let server = TestServer::start(app).await;

    assert_eq!(server.get("/").await.text(), "ok");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "first in",
            "second in",
            "route in",
            "handler",
            "route out",
            "second out",
            "first out"
        ]
    );
}

/// A middleware that answers early stops the chain: the handler never runs.
#[tokio::test]
async fn middleware_can_answer_early() {
    let ran = Arc::new(Mutex::new(false));
    let mut app = verb::create_server();
    app.middleware(|req: Request, next: Next| async move {
        if req.header("authorization") != Some("Bearer letmein") {
            return HttpError::unauthorized("missing token").into_response();
        }
        next.run(req).await
    });
    let handler_ran = Arc::clone(&ran);
    app.get("/secret", move |_req| {
        let ran = Arc::clone(&handler_ran);
        async move {
            *ran.lock().unwrap() = true;
            "secret"
        }
    });
    let server = TestServer::start(app).await;

    let res = server.get("/secret").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<serde_json::Value>()["message"], "missing token");
    assert!(!*ran.lock().unwrap(), "the handler must not run");

    let res = server
        .request(Method::GET, "/secret")
        .header("authorization", "Bearer letmein")
        .send()
        .await;
    assert_eq!(res.text(), "secret");
}

/// Middleware can attach typed data for the handler and post-process the response; it also runs for
/// requests no route matches.
#[tokio::test]
async fn middleware_attaches_data_and_post_processes() {
    #[derive(Clone)]
    struct User(&'static str);

    let mut app = verb::create_server();
    app.middleware(|mut req: Request, next: Next| async move {
        req.extensions_mut().insert(User("ada"));
        next.run(req).await.header("x-powered-by", "verb")
    });
    app.get("/me", |req: Request| async move {
        req.extensions()
            .get::<User>()
            .map(|u| u.0)
            .unwrap_or("nobody")
    });
    let server = TestServer::start(app).await;

    let res = server.get("/me").await;
    assert_eq!(res.text(), "ada");
    assert_eq!(res.header("x-powered-by"), Some("verb"));
    let res = server.get("/missing").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.header("x-powered-by"), Some("verb"));
}

/// Route middleware applies to its route only.
#[tokio::test]
async fn route_middleware_guards_only_its_route() {
    let mut app = verb::create_server();
    app.get("/public", |_req| async { "public" });
    app.get("/admin", |_req| async { "admin" })
        .middleware(|_req: Request, _next: Next| async { HttpError::forbidden("admins only") });
    let server = TestServer::start(app).await;

    assert_eq!(server.get("/public").await.text(), "public");
    assert_eq!(server.get("/admin").await.status(), StatusCode::FORBIDDEN);
}
