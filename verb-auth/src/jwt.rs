//! Signing and verifying JSON Web Tokens, and the standard claims.

use std::fmt;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The asymmetric algorithms [`Jwt::from_pem`] accepts (HMAC is [`Jwt::hs256`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

/// Why a token was refused, or could not be made. The messages are safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// No token was presented.
    #[error("missing token")]
    Missing,
    /// The token is past its `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is still in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not verify.
    #[error("invalid token signature")]
    InvalidSignature,
    /// The token names another algorithm than the one this verifier accepts (including `none`).
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// `iss` is missing or not the expected issuer.
    #[error("invalid token issuer")]
    InvalidIssuer,
    /// `aud` is missing or not the expected audience.
    #[error("invalid token audience")]
    InvalidAudience,
    /// A required claim (such as `exp`) is missing.
    #[error("token is missing the `{0}` claim")]
    MissingClaim(String),
    /// The token is not a well-formed JWT, or its claims do not have the expected shape.
    #[error("malformed token")]
    Malformed,
    /// A key could not be loaded.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An HMAC secret shorter than [`MIN_SECRET_LEN`] bytes: short enough to be guessed offline from
    /// any one token it signed.
    #[error(
        "JWT secret too short: {len} bytes, at least 32 are needed (use 32 or more random bytes)"
    )]
    WeakSecret {
        /// The length of the secret given, in bytes.
        len: usize,
    },
    /// This verifier has no private key, so it cannot sign.
    #[error("no signing key: this verifier was built from a public key only")]
    CannotSign,
    /// A refreshed token names another subject (`sub`) than the one the connection authenticated
    /// as: a refresh extends a session, it never switches users.
    #[error("token is for another subject")]
    SubjectChanged,
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidSignature => JwtError::InvalidSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                JwtError::WrongAlgorithm
            }
            ErrorKind::InvalidIssuer => JwtError::InvalidIssuer,
            ErrorKind::InvalidAudience => JwtError::InvalidAudience,
            ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
            ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidKeyFormat => JwtError::InvalidKey(err.to_string()),
            _ => JwtError::Malformed,
        }
    }
}

/// The usual JWT claims, plus whatever else the token carries (`extra`).
///
/// ```
/// use std::time::Duration;
/// use verb_auth::{Claims, HasRoles};
///
/// let claims = Claims::new("42", Duration::from_secs(3600))
///     .with_role("admin")
///     .with("username", "ada");
/// assert!(claims.has_role("admin"));
/// assert_eq!(claims.get_str("username"), Some("ada"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// Subject: who the token is for (a user id).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// A single role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Several roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Claims {
    /// Claims for `sub`, issued now and valid for `ttl`.
    pub fn new(sub: impl Into<String>, ttl: Duration) -> Self {
        let now = now_secs();
        Self {
            sub: sub.into(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            nbf: None,
            iss: None,
            aud: None,
            role: None,
            roles: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Sets the role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Adds a claim.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// An extra claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }

    /// An extra claim that is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.extra.get(name).and_then(Value::as_str)
    }
}

/// Claims that carry roles, for [`require_role`](crate::require_role).
pub trait HasRoles {
    /// Whether the holder has `role`.
    fn has_role(&self, role: &str) -> bool;
}

impl HasRoles for Claims {
    fn has_role(&self, role: &str) -> bool {
        self.role.as_deref() == Some(role) || self.roles.iter().any(|r| r == role)
    }
}

/// The shortest HMAC secret [`Jwt::hs256`] accepts, in bytes (as long as the SHA-256 output, RFC 7518
/// §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// Signs and verifies tokens with one key and one algorithm: a token naming any other algorithm
/// (including `none`) is refused, so algorithm confusion is impossible. `exp` is required; `exp` and
/// `nbf` are checked with a small leeway (5 s by default); `iss` and `aud` when configured.
///
/// ```
/// use std::time::Duration;
/// use verb_auth::{Claims, Jwt, JwtError};
///
/// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes")?;
/// let token = jwt.sign(&Claims::new("42", Duration::from_secs(60)))?;
/// let claims: Claims = jwt.verify(&token)?;
/// assert_eq!(claims.sub, "42");
/// assert_eq!(jwt.verify::<Claims>("not.a.token"), Err(JwtError::Malformed));
/// # Ok::<(), JwtError>(())
/// ```
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<Keys>,
}

struct Keys {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
}

/// jsonwebtoken picks its crypto backend from its features; name it once so another crate enabling a
/// second backend cannot leave the choice ambiguous.
fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

impl Jwt {
    /// HMAC-SHA256 with a shared secret of at least [`MIN_SECRET_LEN`] (32) bytes; use random ones.
    ///
    /// # Errors
    ///
    /// [`JwtError::WeakSecret`] for a shorter secret (an empty or unset `JWT_SECRET`, say): anyone who
    /// sees one token could recover a short secret offline and forge tokens.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(JwtError::WeakSecret { len: secret.len() });
        }
        Ok(Self::with_keys(
            Algorithm::HS256,
            Some(EncodingKey::from_secret(secret)),
            DecodingKey::from_secret(secret),
        ))
    }

    /// An asymmetric algorithm from PEM keys: the public key verifies; the private key, if given,
    /// signs.
    ///
    /// # Errors
    ///
    /// [`JwtError::InvalidKey`] if a key does not parse for `algorithm`.
    pub fn from_pem(
        algorithm: KeyAlgorithm,
        private_pem: Option<&[u8]>,
        public_pem: &[u8],
    ) -> Result<Self, JwtError> {
        let invalid = |err: jsonwebtoken::errors::Error| JwtError::InvalidKey(err.to_string());
        let (alg, encoding, decoding) = match algorithm {
            KeyAlgorithm::Rs256 => (
                Algorithm::RS256,
                private_pem
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(invalid)?,
                DecodingKey::from_rsa_pem(public_pem).map_err(invalid)?,
            ),
            KeyAlgorithm::Es256 => (
                Algorithm::ES256,
                private_pem
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(invalid)?,
                DecodingKey::from_ec_pem(public_pem).map_err(invalid)?,
            ),
            KeyAlgorithm::EdDsa => (
                Algorithm::EdDSA,
                private_pem
                    .map(EncodingKey::from_ed_pem)
                    .transpose()
                    .map_err(invalid)?,
                DecodingKey::from_ed_pem(public_pem).map_err(invalid)?,
            ),
        };
        Ok(Self::with_keys(alg, encoding, decoding))
    }

    fn with_keys(
        algorithm: Algorithm,
        encoding: Option<EncodingKey>,
        decoding: DecodingKey,
    ) -> Self {
        install_crypto();
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            inner: Arc::new(Keys {
                algorithm,
                encoding,
                decoding,
                validation,
            }),
        }
    }

    fn tune(self, f: impl FnOnce(&mut Validation)) -> Self {
        let mut validation = self.inner.validation.clone();
        f(&mut validation);
        Self {
            inner: Arc::new(Keys {
                algorithm: self.inner.algorithm,
                encoding: self.inner.encoding.clone(),
                decoding: self.inner.decoding.clone(),
                validation,
            }),
        }
    }

    /// Requires `iss` to be `issuer`.
    pub fn issuer(self, issuer: &str) -> Self {
        self.tune(|v| {
            v.set_issuer(&[issuer]);
            v.required_spec_claims.insert("iss".to_owned());
        })
    }

    /// Requires `aud` to be `audience`.
    pub fn audience(self, audience: &str) -> Self {
        self.tune(|v| {
            v.set_audience(&[audience]);
            v.validate_aud = true;
            v.required_spec_claims.insert("aud".to_owned());
        })
    }

    /// How far past `exp` (or before `nbf`) a token is still accepted, for clock skew.
    ///
    /// Default is 5 seconds.
    pub fn leeway(self, leeway: Duration) -> Self {
        self.tune(|v| v.leeway = leeway.as_secs())
    }

    /// Signs `claims` into a token.
    ///
    /// # Errors
    ///
    /// [`JwtError::CannotSign`] without a private key; [`JwtError::Malformed`] if the claims do not
    /// serialize.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, JwtError> {
        let key = self.inner.encoding.as_ref().ok_or(JwtError::CannotSign)?;
        Ok(jsonwebtoken::encode(
            &Header::new(self.inner.algorithm),
            claims,
            key,
        )?)
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    ///
    /// A [`JwtError`] saying why the token is refused.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, JwtError> {
        let data = jsonwebtoken::decode::<C>(token, &self.inner.decoding, &self.inner.validation)?;
        Ok(data.claims)
    }

    /// Verifies `token` and returns its claims and the moment it stops being accepted: its `exp`
    /// plus the [leeway](Self::leeway). A connection authenticated with it is closed then (see
    /// [`JwtAuth::expire_connections`](crate::JwtAuth::expire_connections)).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use verb_auth::{Claims, Jwt};
    ///
    /// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes")?;
    /// let token = jwt.sign(&Claims::new("42", Duration::from_secs(60)))?;
    /// let (claims, until) = jwt.verify_with_expiry::<Claims>(&token)?;
    /// assert_eq!(claims.sub, "42");
    /// assert!(until > SystemTime::now() + Duration::from_secs(60));
    /// # Ok::<(), verb_auth::JwtError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`JwtError`] saying why the token is refused.
    pub fn verify_with_expiry<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<(C, SystemTime), JwtError> {
        let session = self.verify_session(token)?;
        Ok((session.claims, session.until))
    }

    /// Verifies `token` once and reads the claims twice: as `C`, and for the session's `exp` and
    /// `sub`.
    pub(crate) fn verify_session<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Session<C>, JwtError> {
        #[derive(Deserialize)]
        struct Standard {
            exp: u64,
            #[serde(default)]
            sub: Option<String>,
        }
        let raw = jsonwebtoken::decode::<Box<serde_json::value::RawValue>>(
            token,
            &self.inner.decoding,
            &self.inner.validation,
        )?
        .claims;
        let claims = serde_json::from_str::<C>(raw.get()).map_err(|_| JwtError::Malformed)?;
        let standard =
            serde_json::from_str::<Standard>(raw.get()).map_err(|_| JwtError::Malformed)?;
        let until = UNIX_EPOCH
            .checked_add(Duration::from_secs(
                standard.exp.saturating_add(self.inner.validation.leeway),
            ))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)));
        Ok(Session {
            claims,
            exp: UNIX_EPOCH
                .checked_add(Duration::from_secs(standard.exp))
                .unwrap_or(until),
            until,
            subject: standard.sub.map(Subject),
        })
    }
}

/// A verified token, as a connection keeps it.
pub(crate) struct Session<C> {
    pub(crate) claims: C,
    /// `exp`.
    pub(crate) exp: SystemTime,
    /// `exp` plus the leeway.
    pub(crate) until: SystemTime,
    pub(crate) subject: Option<Subject>,
}

/// The `sub` a connection authenticated as: a refresh must name the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject(pub(crate) String);

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print keys.
        f.debug_struct("Jwt")
            .field("algorithm", &self.inner.algorithm)
            .field("can_sign", &self.inner.encoding.is_some())
            .field("leeway_s", &self.inner.validation.leeway)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(alg).expect("key generation");
        (pair.serialize_pem(), pair.public_key_pem())
    }

    /// ES256 and EdDSA from PEM: tokens round-trip, a verifier built from the public key alone cannot
    /// sign, and another key pair's tokens are refused.
    #[test]
    fn asymmetric_keys_sign_and_verify() {
        for (alg, which) in [
            (KeyAlgorithm::Es256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (KeyAlgorithm::EdDsa, &rcgen::PKCS_ED25519),
        ] {
            let (private, public) = key_pair(which);
            let signer = Jwt::from_pem(alg, Some(private.as_bytes()), public.as_bytes()).unwrap();
            let verifier = Jwt::from_pem(alg, None, public.as_bytes()).unwrap();
            let token = signer
                .sign(&Claims::new("9", Duration::from_secs(60)))
                .unwrap();
            assert_eq!(
                verifier.verify::<Claims>(&token).unwrap().sub,
                "9",
                "{alg:?}"
            );
            assert_eq!(
                verifier.sign(&Claims::new("9", Duration::ZERO)),
                Err(JwtError::CannotSign)
            );

            let (other_private, other_public) = key_pair(which);
            let other = Jwt::from_pem(alg, Some(other_private.as_bytes()), other_public.as_bytes())
                .unwrap();
            let forged = other
                .sign(&Claims::new("9", Duration::from_secs(60)))
                .unwrap();
            assert_eq!(
                verifier.verify::<Claims>(&forged),
                Err(JwtError::InvalidSignature)
            );
        }
    }

    /// The classic confusion: an HS256 token whose secret is the server's public key is refused by
    /// an asymmetric verifier.
    #[test]
    fn algorithm_confusion_is_refused() {
        let (_, public) = key_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let verifier = Jwt::from_pem(KeyAlgorithm::Es256, None, public.as_bytes()).unwrap();
        let confused = Jwt::hs256(public.as_bytes())
            .unwrap()
            .sign(&Claims::new("1", Duration::from_secs(60)).with_role("admin"))
            .unwrap();
        assert_eq!(
            verifier.verify::<Claims>(&confused),
            Err(JwtError::WrongAlgorithm)
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_are_invalid() {
        let (_, ed_public) = key_pair(&rcgen::PKCS_ED25519);
        assert!(matches!(
            Jwt::from_pem(KeyAlgorithm::Rs256, None, ed_public.as_bytes()),
            Err(JwtError::InvalidKey(_))
        ));
        assert!(matches!(
            Jwt::from_pem(KeyAlgorithm::Es256, None, b"not a key"),
            Err(JwtError::InvalidKey(_))
        ));
    }

    /// A secret under 32 bytes is refused at construction, naming its length; 32 is enough.
    #[test]
    fn short_hmac_secrets_are_refused() {
        for len in [0, 1, 16, 31] {
            let err = Jwt::hs256(vec![b'k'; len]).err();
            assert_eq!(err, Some(JwtError::WeakSecret { len }));
            assert!(err.unwrap().to_string().contains(&format!("{len} bytes")));
        }
        assert!(Jwt::hs256([b'k'; 32]).is_ok());
    }

    /// `exp` is required; `iss`, `aud` and `nbf` are checked when configured or present.
    #[test]
    fn registered_claims_are_validated() {
        let jwt = Jwt::hs256(b"0123456789abcdef0123456789abcdef").unwrap();
        let no_exp = jwt.sign(&serde_json::json!({ "sub": "1" })).unwrap();
        assert_eq!(
            jwt.verify::<Value>(&no_exp),
            Err(JwtError::MissingClaim("exp".to_owned()))
        );
        // Typed `Claims` need `exp` to exist at all.
        assert_eq!(jwt.verify::<Claims>(&no_exp), Err(JwtError::Malformed));
        let mut future = Claims::new("1", Duration::from_secs(600));
        future.nbf = Some(future.iat + 300);
        let early = jwt.sign(&future).unwrap();
        assert_eq!(jwt.verify::<Claims>(&early), Err(JwtError::NotYetValid));

        let strict = jwt.clone().issuer("verb").audience("chat");
        let mut claims = Claims::new("1", Duration::from_secs(60));
        assert!(matches!(
            strict.verify::<Claims>(&jwt.sign(&claims).unwrap()),
            Err(JwtError::MissingClaim(_))
        ));
        claims.aud = Some("chat".to_owned());
        claims.iss = Some("someone else".to_owned());
        assert_eq!(
            strict.verify::<Claims>(&jwt.sign(&claims).unwrap()),
            Err(JwtError::InvalidIssuer)
        );
        claims.iss = Some("verb".to_owned());
        claims.aud = Some("other".to_owned());
        assert_eq!(
            strict.verify::<Claims>(&jwt.sign(&claims).unwrap()),
            Err(JwtError::InvalidAudience)
        );
        claims.aud = Some("chat".to_owned());
        assert!(strict.verify::<Claims>(&jwt.sign(&claims).unwrap()).is_ok());
        // Within the leeway, a just-expired token still passes.
        let mut just = Claims::new("1", Duration::ZERO);
        just.exp -= 2;
        assert!(jwt.verify::<Claims>(&jwt.sign(&just).unwrap()).is_ok());
    }
}
