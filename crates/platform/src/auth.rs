//! Identity (SYSTEM.md §10): who a request's bearer token says the caller is, and what they may
//! do.
//!
//! **Every component verifies the token itself**; the gateway forwards `Authorization`
//! unchanged. Operators reach the components on 127.0.0.1 too, past the gateway, so a component
//! cannot trust an identity header it has no way to check: anyone who can open a socket could
//! write it. A signature check costs tens of microseconds, small next to a request, so checking
//! again where the data lives costs little and leaves no path that skips it.
//!
//! A [`Verifier`] checks, in this order: the header names an accepted algorithm (never `none`,
//! never HMAC: the keys here are public, and an HMAC "signed" with a public key would verify
//! against it); its `kid` names a known key whose type fits that algorithm; the signature; `iss`,
//! `aud` and `exp` (and `nbf` when present) with a small leeway; `sub` is a UUID when the token
//! carries the customer role (the customer id of §10). Keys come from a local public key file
//! (`./dev`'s key pair) or from an OpenID Connect issuer's JWKS, cached by `kid`: an unknown
//! `kid` fetches the set again, at most once per `jwks_refetch_seconds`, so key rotation works
//! and a flood of made-up kids cannot hammer the issuer; the set is also fetched again once older
//! than `jwks_max_age_seconds`, so a withdrawn key stops verifying.
//!
//! In handlers, [`Identity`] is an extractor (it finds the [`Verifier`] in the request
//! extensions: `router.layer(axum::Extension(verifier))`), and [`require`] turns a missing role
//! into a 403. Rejections are [`AuthError`]s, answered as problem documents: 401 with
//! `WWW-Authenticate: Bearer realm="shop"` (RFC 6750, with `error="invalid_token"` when a token
//! was sent), 403 for a role that may not, 503 when the issuer's keys cannot be had. Their
//! details name what was wrong with the token, never a key, a URL or a library's message.
//!
//! A token that verified is remembered for a while ([`VERIFIED_FOR`], never past its `exp`), so
//! a client that sends the same token with every request pays for the signature check once a
//! minute rather than on every request. What is remembered is the whole token text, so any
//! other token, tampered ones included, is checked in full; a key that leaves the issuer's set
//! (or a set older than `jwks_max_age_seconds`) stops the tokens it signed at once.
//!
//! [`Signer`] makes tokens with the local private key, for `shop token` and tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use uuid::Uuid;

use crate::http::Problem;
use crate::settings::AuthSettings;

/// Tokens longer than this are refused before any parsing: real ones are a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A key set fetch that takes longer fails; requests waiting on it get a 503.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// An RSA key under 2048 bits is refused: 256 bytes are 342 characters of unpadded base64url.
const MIN_RSA_MODULUS_CHARS: usize = 342;
/// How long a verified token is taken at its word again without checking its signature.
pub const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// The most verified tokens remembered; past it the memory starts over.
const MAX_VERIFIED: usize = 10_000;

/// What a token may do (§8). `ops` implies `viewer`; neither implies `customer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Customer,
    Viewer,
    Ops,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Viewer => "viewer",
            Role::Ops => "ops",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "customer" => Some(Role::Customer),
            "viewer" => Some(Role::Viewer),
            "ops" => Some(Role::Ops),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The roles a token carries. Unknown role names are ignored: an issuer serves other
/// applications too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    customer: bool,
    viewer: bool,
    ops: bool,
}

impl Roles {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names
            .into_iter()
            .filter_map(Role::parse)
            .fold(Roles::default(), Roles::with)
    }

    pub fn with(mut self, role: Role) -> Self {
        match role {
            Role::Customer => self.customer = true,
            Role::Viewer => self.viewer = true,
            Role::Ops => self.ops = true,
        }
        self
    }

    /// Whether these roles may act as `role`: `ops` counts as `viewer` too.
    pub fn contains(&self, role: Role) -> bool {
        match role {
            Role::Customer => self.customer,
            Role::Viewer => self.viewer || self.ops,
            Role::Ops => self.ops,
        }
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the customer id. A token without the customer role may have a `sub`
    /// that is not a UUID (an operator account at an OpenID Connect issuer); its `subject` is
    /// then the nil UUID and [`Identity::name`] says who it is.
    pub subject: Uuid,
    pub roles: Roles,
    /// The token's `sub` as sent, for logs and the audit trail.
    pub name: String,
}

impl Identity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// `Ok` when this identity has `role`, else a 403.
    pub fn require(&self, role: Role) -> Result<(), AuthError> {
        require(self, role)
    }
}

/// `Ok` when `identity` has `role`, else [`AuthError::Forbidden`] (a 403).
pub fn require(identity: &Identity, role: Role) -> Result<(), AuthError> {
    if identity.has(role) {
        Ok(())
    } else {
        Err(AuthError::Forbidden(role))
    }
}

/// Why a request has no identity, or may not do what it asks. The messages are the
/// `error_description` and problem detail sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("send Authorization: Bearer <token>")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token is not meant for this service")]
    Audience,
    #[error("the token's subject is not a customer id")]
    Subject,
    #[error("the token's claims are malformed")]
    Claims,
    /// The issuer's key set cannot be fetched and no cached key fits: not the client's fault.
    #[error("the token's signing keys are unavailable")]
    KeysUnavailable,
    #[error("this needs the {0} role")]
    Forbidden(Role),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            AuthError::Forbidden(_) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Your role may not do this",
            )
            .detail(detail)
            .into_response(),
            AuthError::KeysUnavailable => {
                let mut response = Problem::unavailable(detail).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            AuthError::Missing => {
                unauthorized(detail, HeaderValue::from_static(r#"Bearer realm="shop""#))
            }
            _ => {
                // The descriptions are fixed strings without quotes or backslashes, so they fit
                // a quoted-string as they are.
                let challenge = format!(
                    r#"Bearer realm="shop", error="invalid_token", error_description="{detail}""#
                );
                let challenge = HeaderValue::from_str(&challenge).unwrap_or_else(|_| {
                    HeaderValue::from_static(r#"Bearer realm="shop", error="invalid_token""#)
                });
                unauthorized(detail, challenge)
            }
        }
    }
}

fn unauthorized(detail: String, challenge: HeaderValue) -> Response {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "A valid bearer token is required",
    )
    .detail(detail)
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// A configuration that cannot work; services refuse to start with one.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "unknown or refused signature algorithm {0:?} (accepted: EdDSA, ES256, ES384, RS256-512, PS256-512)"
    )]
    Algorithm(String),
    #[error("no signature algorithm configured")]
    NoAlgorithm,
    #[error("reading the key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {0} holds no key usable with the configured algorithms")]
    Key(String),
    #[error("building the JWKS client")]
    Client(#[source] reqwest::Error),
    #[error("signing a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The asymmetric algorithms of a comma-separated list; HMAC and `none` are refused.
fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, SetupError> {
    let mut algorithms = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let algorithm: Algorithm = name
            .parse()
            .map_err(|_| SetupError::Algorithm(name.to_owned()))?;
        if matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(SetupError::Algorithm(name.to_owned()));
        }
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err(SetupError::NoAlgorithm);
    }
    Ok(algorithms)
}

/// A verification key and the algorithms it may verify: the accepted ones its type fits (and,
/// for a JWK that names one, only that).
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Checks bearer tokens. Cheap to clone (one `Arc`); build one per process.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.inner.keys {
            Keys::Fixed(_) => "key file",
            Keys::Jwks(_) => "JWKS",
        };
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("algorithms", &self.inner.algorithms)
            .field("keys", &keys)
            .finish()
    }
}

struct Inner {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    /// One per accepted algorithm, built once: a token is checked against the one its
    /// (accepted) header names.
    validations: Vec<(Algorithm, Validation)>,
    role_claim: Vec<String>,
    keys: Keys,
    /// Tokens that verified: until when each may be taken at its word (see the module docs).
    verified: std::sync::Mutex<HashMap<String, Remembered>>,
}

/// A token that verified: who it proves, until when that is taken at its word, and the key that
/// signed it (withdrawn from the issuer's set, it stops the token at once).
struct Remembered {
    identity: Identity,
    until: Instant,
    kid: String,
}

enum Keys {
    Fixed(HashMap<String, Arc<Key>>),
    Jwks(Jwks),
}

impl Verifier {
    /// From the settings: a JWKS URL when set, else the public key file (read now, so a
    /// missing file stops the start). The key set is fetched on first use, so a component
    /// starts while the issuer is briefly away.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, SetupError> {
        let algorithms = parse_algorithms(&settings.algorithms)?;
        let keys = match settings.jwks_url.as_deref().filter(|url| !url.is_empty()) {
            Some(url) => Keys::Jwks(Jwks::new(
                url,
                algorithms.clone(),
                Duration::from_secs(settings.jwks_refetch_seconds),
                Duration::from_secs(settings.jwks_max_age_seconds),
            )?),
            None => {
                let path = &settings.public_key_file;
                let pem = std::fs::read(path).map_err(|source| SetupError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                let key =
                    key_from_pem(&pem, &algorithms).ok_or_else(|| SetupError::Key(path.clone()))?;
                Keys::Fixed(HashMap::from([(settings.key_id.clone(), Arc::new(key))]))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                validations: algorithms
                    .iter()
                    .map(|&algorithm| (algorithm, validation(algorithm, settings)))
                    .collect(),
                algorithms,
                role_claim: settings.role_claim.split('.').map(str::to_owned).collect(),
                keys,
                verified: std::sync::Mutex::default(),
            }),
        })
    }

    /// The identity a token proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        if let Some(identity) = self.remembered(token) {
            return Ok(identity);
        }
        let (identity, expires, kid) = self.check(token).await?;
        self.remember(token, &identity, expires, kid);
        Ok(identity)
    }

    /// A token verified lately, while its key is still in the current set.
    fn remembered(&self, token: &str) -> Option<Identity> {
        let (identity, kid) = {
            let verified = self
                .inner
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let remembered = verified.get(token)?;
            if Instant::now() >= remembered.until {
                return None;
            }
            (remembered.identity.clone(), remembered.kid.clone())
        };
        let known = match &self.inner.keys {
            Keys::Fixed(keys) => keys.contains_key(&kid),
            Keys::Jwks(jwks) => jwks.holds(&kid),
        };
        known.then_some(identity)
    }

    /// Remembers a verified token until `expires` (its `exp`), for [`VERIFIED_FOR`] at most.
    fn remember(&self, token: &str, identity: &Identity, expires: SystemTime, kid: String) {
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(VERIFIED_FOR);
        let mut verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= MAX_VERIFIED {
            let now = Instant::now();
            verified.retain(|_, remembered| remembered.until > now);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        if let Some(until) = Instant::now().checked_add(left) {
            let identity = identity.clone();
            verified.insert(
                token.to_owned(),
                Remembered {
                    identity,
                    until,
                    kid,
                },
            );
        }
    }

    /// The full check of a token: its identity, its `exp` and the `kid` of its key.
    async fn check(&self, token: &str) -> Result<(Identity, SystemTime, String), AuthError> {
        let inner = &*self.inner;
        // The algorithm is read before jsonwebtoken parses the header, which refuses names it
        // does not know ("none") as malformed JSON: here they are named as what they are.
        let algorithm = header_algorithm(token)?;
        if !inner.algorithms.contains(&algorithm) {
            return Err(AuthError::Algorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != algorithm {
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
        let key = match &inner.keys {
            Keys::Fixed(keys) => keys.get(kid).cloned().ok_or(AuthError::UnknownKey)?,
            Keys::Jwks(jwks) => jwks.key(kid).await?,
        };
        if !key.algorithms.contains(&algorithm) {
            return Err(AuthError::Algorithm);
        }

        let (_, validation) = inner
            .validations
            .iter()
            .find(|(a, _)| *a == algorithm)
            .ok_or(AuthError::Algorithm)?;
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.decoding,
            validation,
        )
        .map_err(|e| rejection(e.kind()))?
        .claims;

        let roles = roles_of(&claims, &inner.role_claim)?;
        let name = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) => sub.clone(),
            _ => return Err(AuthError::Claims),
        };
        let subject = match Uuid::parse_str(&name) {
            Ok(subject) => subject,
            Err(_) if !roles.contains(Role::Customer) => Uuid::nil(),
            Err(_) => return Err(AuthError::Subject),
        };
        // `exp` is required and was checked, so it is there; a token without a readable one
        // is not remembered (it expires now).
        let expires = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
            .unwrap_or(UNIX_EPOCH);
        Ok((
            Identity {
                subject,
                roles,
                name,
            },
            expires,
            kid.to_owned(),
        ))
    }

    /// The identity of a request's `Authorization: Bearer` header.
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        self.verify(bearer_token(headers)?).await
    }
}

/// The claims checks for tokens signed with `algorithm`: `iss`, `aud`, `exp` and `sub` must be
/// there, `nbf` is checked when present.
fn validation(algorithm: Algorithm, settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = settings.leeway_seconds;
    validation
}

/// The token of an `Authorization: Bearer` header. No header, or another scheme, is
/// [`AuthError::Missing`] (RFC 6750 §3.1: no error code when no token was sent).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    match token.trim() {
        "" => Err(AuthError::Malformed),
        token => Ok(token),
    }
}

/// The `alg` of a compact JWS, read without trusting anything else in it.
fn header_algorithm(token: &str) -> Result<Algorithm, AuthError> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
    }
    let encoded = token.split('.').next().ok_or(AuthError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    raw.alg.parse().map_err(|_| AuthError::Algorithm)
}

fn rejection(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::Issuer,
            "aud" => AuthError::Audience,
            _ => AuthError::Claims,
        },
        ErrorKind::InvalidClaimFormat(_) => AuthError::Claims,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => {
            // A configured key the backend cannot use: the operator's problem, logged for them;
            // the client learns only that the signature did not verify.
            tracing::warn!(error = ?kind, "a verification key is unusable");
            AuthError::Signature
        }
        _ => AuthError::Malformed,
    }
}

/// The roles in `claim` (a path into the claims): an array of strings, or one string of
/// space-separated names. No such claim is no role.
fn roles_of(
    claims: &serde_json::Map<String, serde_json::Value>,
    claim: &[String],
) -> Result<Roles, AuthError> {
    let mut value = None;
    let mut object = Some(claims);
    for part in claim {
        value = object.and_then(|o| o.get(part));
        object = value.and_then(serde_json::Value::as_object);
    }
    match value {
        None | Some(serde_json::Value::Null) => Ok(Roles::default()),
        Some(serde_json::Value::String(names)) => Ok(Roles::from_names(names.split_whitespace())),
        Some(serde_json::Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().ok_or(AuthError::Claims))
            .collect::<Result<Vec<_>, _>>()
            .map(Roles::from_names),
        Some(_) => Err(AuthError::Claims),
    }
}

/// The algorithms of `accepted` a key of this family can verify.
fn fitting(decoding: &DecodingKey, accepted: &[Algorithm]) -> Vec<Algorithm> {
    let family = decoding.family();
    let family = family.algorithms();
    accepted
        .iter()
        .copied()
        .filter(|a| family.contains(a))
        .collect()
}

/// A PEM public key (SPKI) of any supported type, if one of `accepted` fits it.
fn key_from_pem(pem: &[u8], accepted: &[Algorithm]) -> Option<Key> {
    let decoding = DecodingKey::from_ed_pem(pem)
        // The EdDSA backend reads 32 bytes of the key without checking its length.
        .ok()
        .filter(|k| k.as_bytes().len() == 32)
        .or_else(|| DecodingKey::from_ec_pem(pem).ok())
        .or_else(|| DecodingKey::from_rsa_pem(pem).ok())?;
    let algorithms = fitting(&decoding, accepted);
    (!algorithms.is_empty()).then_some(Key {
        decoding,
        algorithms,
    })
}

/// A signing key from a JWK, if one of `accepted` fits it. Keys for encryption, of unknown
/// curves or too short are skipped.
fn key_from_jwk(jwk: &Jwk, accepted: &[Algorithm]) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let curve_fits: &[Algorithm] = match &jwk.algorithm {
        // 32 bytes in unpadded base64url are 43 characters; the EdDSA backend reads 32 bytes
        // without checking.
        AlgorithmParameters::OctetKeyPair(p)
            if p.curve == EllipticCurve::Ed25519 && p.x.len() == 43 =>
        {
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            &[Algorithm::ES256]
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            &[Algorithm::ES384]
        }
        AlgorithmParameters::RSA(p) if p.n.len() >= MIN_RSA_MODULUS_CHARS => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        _ => return None,
    };
    let named = match jwk.common.key_algorithm {
        Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    let algorithms: Vec<Algorithm> = fitting(&decoding, accepted)
        .into_iter()
        .filter(|a| curve_fits.contains(a) && named.is_none_or(|n| n == *a))
        .collect();
    (!algorithms.is_empty()).then_some(Key {
        decoding,
        algorithms,
    })
}

/// An OpenID Connect issuer's key set, cached by `kid`.
struct Jwks {
    url: String,
    client: reqwest::Client,
    accepted: Vec<Algorithm>,
    refetch_after: Duration,
    max_age: Duration,
    cache: RwLock<Cached>,
    /// Held while fetching, so concurrent requests with an unknown kid wait for one fetch
    /// instead of each starting one. Holds the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
}

impl Jwks {
    fn new(
        url: &str,
        accepted: Vec<Algorithm>,
        refetch_after: Duration,
        max_age: Duration,
    ) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(SetupError::Client)?;
        Ok(Self {
            url: url.to_owned(),
            client,
            accepted,
            refetch_after,
            max_age,
            cache: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached key and whether the set is still fresh.
    fn cached(&self, kid: &str) -> (Option<Arc<Key>>, bool) {
        match self.cache.read() {
            Ok(cache) => (
                cache.keys.get(kid).cloned(),
                cache.fetched.is_some_and(|at| at.elapsed() < self.max_age),
            ),
            Err(_) => (None, false),
        }
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, AuthError> {
        if let (Some(key), true) = self.cached(kid) {
            return Ok(key);
        }
        let mut last_attempt = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (cached, fresh) = self.cached(kid);
        if let (Some(key), true) = (&cached, fresh) {
            return Ok(key.clone());
        }
        if last_attempt.is_some_and(|at| at.elapsed() < self.refetch_after) {
            return cached.ok_or_else(|| self.missing());
        }
        *last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let key = keys.get(kid).cloned();
                if let Ok(mut cache) = self.cache.write() {
                    *cache = Cached {
                        keys,
                        fetched: Some(Instant::now()),
                    };
                }
                key.ok_or(AuthError::UnknownKey)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "fetching the issuer's key set failed");
                // A stale key still verifies while the issuer is away.
                cached.ok_or_else(|| self.missing())
            }
        }
    }

    /// Whether `kid` is in a key set fetched less than `max_age` ago: a token it signed may be
    /// taken at its word without asking the issuer again.
    fn holds(&self, kid: &str) -> bool {
        self.cache.read().is_ok_and(|cache| {
            cache.keys.contains_key(kid)
                && cache.fetched.is_some_and(|at| at.elapsed() < self.max_age)
        })
    }

    /// No key for the kid: unknown when a set was fetched, else the set is unavailable.
    fn missing(&self) -> AuthError {
        match self.cache.read() {
            Ok(cache) if cache.fetched.is_some() => AuthError::UnknownKey,
            _ => AuthError::KeysUnavailable,
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, reqwest::Error> {
        /// Keys are parsed one by one: a key of a type this crate does not know is skipped,
        /// not a reason to refuse the others.
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let keys: HashMap<_, _> = set
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, Arc::new(key_from_jwk(&jwk, &self.accepted)?)))
            })
            .collect();
        tracing::info!(url = %self.url, keys = keys.len(), "fetched the issuer's key set");
        Ok(keys)
    }
}

/// `Identity` as an extractor: reads the bearer token and verifies it with the [`Verifier`] in
/// the request extensions (`router.layer(axum::Extension(verifier))`).
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(verifier) = parts.extensions.get::<Verifier>().cloned() else {
            tracing::error!("no Verifier in the request extensions: the router lacks its layer");
            return Err(Problem::internal().into_response());
        };
        verifier
            .verify_headers(&parts.headers)
            .await
            .map_err(IntoResponse::into_response)
    }
}

/// Makes tokens with a local private key: what `shop token` prints, and what tests send.
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    key_id: String,
    issuer: String,
    audience: String,
    role_claim: String,
}

impl Signer {
    /// From the settings' `private_key_file` (PKCS#8 PEM: Ed25519, P-256/P-384 or RSA), signing
    /// with the first configured algorithm its type fits.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, SetupError> {
        let path = &settings.private_key_file;
        let pem = std::fs::read(path).map_err(|source| SetupError::KeyFile {
            path: path.clone(),
            source,
        })?;
        let key = EncodingKey::from_ed_pem(&pem)
            .or_else(|_| EncodingKey::from_ec_pem(&pem))
            .or_else(|_| EncodingKey::from_rsa_pem(&pem))
            .map_err(|_| SetupError::Key(path.clone()))?;
        let family = key.family();
        let family = family.algorithms();
        let algorithm = parse_algorithms(&settings.algorithms)?
            .into_iter()
            .find(|a| family.contains(a))
            .ok_or_else(|| SetupError::Key(path.clone()))?;
        Ok(Self {
            key,
            algorithm,
            key_id: settings.key_id.clone(),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            role_claim: settings.role_claim.clone(),
        })
    }

    /// A token for `subject` with `roles`, valid for `lifetime` from now.
    pub fn token(
        &self,
        subject: Uuid,
        roles: &[Role],
        lifetime: Duration,
    ) -> Result<String, SetupError> {
        self.token_for(&subject.to_string(), roles, lifetime)
    }

    /// A token whose `sub` is any name: an operator's account, say, which is no customer id.
    /// Each token gets a `jti` of its own, so a login with it can be allowed once.
    pub fn token_for(
        &self,
        subject: &str,
        roles: &[Role],
        lifetime: Duration,
    ) -> Result<String, SetupError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.clone());
        let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        // A dotted claim name is a path into objects, as the verifier reads it.
        let mut path = self.role_claim.rsplit('.');
        let mut nested = serde_json::json!(names);
        let mut top = path.next().unwrap_or_default();
        for outer in path {
            nested =
                serde_json::Value::Object(serde_json::Map::from_iter([(top.to_owned(), nested)]));
            top = outer;
        }
        let mut claims = serde_json::Map::new();
        claims.insert(top.to_owned(), nested);
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("sub".into(), subject.into());
        claims.insert("jti".into(), Uuid::new_v4().to_string().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(lifetime.as_secs()).into());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(SetupError::Sign)
    }
}
