//! The demo accounts, secret and `POST /login` shared by `auth-chat` and `inband-auth`.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use verb::prelude::*;
use verb::{Jwt, RateLimit};

/// A demo user (the guides' two accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// The user id (the token's `sub`, as a string).
    pub id: u64,
    /// The login name.
    pub username: &'static str,
    /// `admin` or `user`.
    pub role: &'static str,
    password: &'static str,
}

/// The guides' accounts: `admin`/`password` (id 1, admin) and `john`/`password` (id 2, user).
pub const USERS: [User; 2] = [
    User {
        id: 1,
        username: "admin",
        role: "admin",
        password: "password",
    },
    User {
        id: 2,
        username: "john",
        role: "user",
        password: "password",
    },
];

/// The account with these credentials. Every password is compared in full, so the time taken does
/// not tell which prefix matched.
pub fn check(username: &str, password: &str) -> Option<User> {
    USERS.iter().copied().find(|user| {
        let matches = user
            .password
            .bytes()
            .zip(password.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        user.username == username && matches == 0 && user.password.len() == password.len()
    })
}

/// The flags of the authentication examples.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// HS256 secret for the tokens (default: a random secret per start, so tokens die with the
    /// process).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// How long issued tokens live, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_s: u64,
}

impl AuthArgs {
    /// The token verifier and signer. A `--jwt-secret` (or `JWT_SECRET`) shorter than 32 bytes ends
    /// the process with status 2 and a message naming its length, before anything listens.
    ///
    /// # Errors
    ///
    /// If the system has no randomness for a generated secret.
    pub fn jwt(&self) -> anyhow::Result<Jwt> {
        if let Some(secret) = &self.jwt_secret {
            return match Jwt::hs256(secret.as_bytes()) {
                Ok(jwt) => Ok(jwt),
                Err(err) => {
                    // A usage error, reported as clap reports one (status 2).
                    eprintln!("error: --jwt-secret / JWT_SECRET: {err}");
                    std::process::exit(2);
                }
            };
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|err| anyhow::anyhow!("no randomness for a JWT secret: {err}"))?;
        tracing::info!("no --jwt-secret or JWT_SECRET: using a random secret for this run");
        Ok(Jwt::hs256(secret)?)
    }

    /// Token lifetime.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_s)
    }
}

/// The token's user as the examples send it: `{"id":1,"username":"admin","role":"admin"}`.
pub fn user_json(claims: &Claims) -> Value {
    json!({
        "id": user_id(claims),
        "username": claims.get_str("username").unwrap_or_default(),
        "role": claims.role.as_deref().unwrap_or_default(),
    })
}

/// The numeric user id of the token (its `sub`).
pub fn user_id(claims: &Claims) -> u64 {
    claims.sub.parse().unwrap_or_default()
}

/// `POST /login` `{"username","password"}` → `{"token":jwt}`; wrong credentials → 401
/// `{"error":"Invalid credentials"}`; limited to 5 a minute (burst 5) per client IP → 429.
pub fn login_route(app: &mut App, jwt: Jwt, ttl: Duration) {
    app.post("/login", move |req: Request| {
        let jwt = jwt.clone();
        async move {
            let body: Value = req.json()?;
            let field = |name: &str| {
                body.get(name).and_then(Value::as_str).ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "Invalid or missing field: {name} (string expected)"
                    ))
                })
            };
            let (username, password) = (field("username")?, field("password")?);
            let Some(user) = check(username, password) else {
                tracing::info!(peer = %req.remote_addr(), username, "login refused");
                return Ok((
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "error": "Invalid credentials" })),
                )
                    .into_response());
            };
            let claims = Claims::new(user.id.to_string(), ttl)
                .with_role(user.role)
                .with("username", user.username);
            let token = jwt.sign(&claims).map_err(|err| {
                tracing::error!(error = %err, "cannot sign a token");
                HttpError::internal("cannot issue a token")
            })?;
            tracing::info!(username, "logged in");
            Ok::<_, HttpError>(Json(json!({ "token": token })).into_response())
        }
    })
    .middleware(RateLimit::per_minute(5).burst(5));
}
