//! Bearer token verification with real signed tokens: the local key file, and an OpenID Connect
//! key set served by an in-process JWKS endpoint on 127.0.0.1 that rotates its keys.
//!
//! The key pairs under `tests/keys/` were made with openssl for these tests only; the JWK
//! coordinates below are those of their public keys.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AuthError, Identity, Role, Roles, Signer, Verifier, require};
use platform::settings::AuthSettings;
use serde_json::{Value, json};
use uuid::Uuid;

const ISSUER: &str = "urn:shop:test";
const AUDIENCE: &str = "shop";
/// `x` of `ed25519-a.pub.pem`, `ed25519-b.pub.pem`; `x`, `y` of `p256.pub.pem`.
const ED_A_X: &str = "nsT_pGf-dLxYOnQTBm4Vlj1fw78bwo5tsLvSdbhHJFc";
const ED_B_X: &str = "T3If19TOtEPOWWz6A9TtlxbMqJh-mMhNgUYOz8QY-iA";
const P256_X: &str = "VImYLQLm13a94kclO5W8R1B_7TCRBJdZXJP3yJQk4m4";
const P256_Y: &str = "mvI2QpjCOFr5Uy-KfbOZ3D_E5baJZXRvPh2q9rXcG-I";

fn key_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
        .display()
        .to_string()
}

fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key file")
}

/// Local keys: key A under kid "a", EdDSA and ES256 accepted.
fn settings() -> AuthSettings {
    AuthSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: "EdDSA, ES256".into(),
        jwks_url: None,
        public_key_file: key_path("ed25519-a.pub.pem"),
        key_id: "a".into(),
        private_key_file: key_path("ed25519-a.pem"),
        role_claim: "roles".into(),
        leeway_seconds: 5,
        jwks_refetch_seconds: 30,
        jwks_max_age_seconds: 3600,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Valid claims for a customer; tests change one thing each.
fn claims(subject: Uuid) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject.to_string(),
        "iat": now(),
        "exp": now() + 600,
        "roles": ["customer"],
    })
}

fn ed_key(name: &str) -> EncodingKey {
    EncodingKey::from_ed_pem(&key_bytes(name)).expect("Ed25519 private key")
}

fn p256_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_bytes("p256.pem")).expect("P-256 private key")
}

fn sign(algorithm: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).expect("signing")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn local_verifier() -> Verifier {
    Verifier::from_settings(&settings()).expect("verifier")
}

#[tokio::test]
async fn a_valid_customer_token_gives_its_subject_and_roles() {
    let subject = Uuid::new_v4();
    let token = Signer::from_settings(&settings())
        .expect("signer")
        .token(subject, &[Role::Customer], Duration::from_secs(3600))
        .expect("token");

    let identity = local_verifier().verify(&token).await.expect("accepted");

    assert_eq!(identity.subject, subject);
    assert_eq!(identity.name, subject.to_string());
    assert!(identity.has(Role::Customer));
    assert!(!identity.has(Role::Viewer));
    assert!(!identity.has(Role::Ops));
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_reason() {
    let verifier = local_verifier();
    let subject = Uuid::new_v4();
    let a = ed_key("ed25519-a.pem");
    let valid = sign(Algorithm::EdDSA, "a", &claims(subject), &a);
    // Verified, and so remembered: the variants below are other texts, checked in full.
    assert!(
        verifier.verify(&valid).await.is_ok(),
        "the baseline verifies"
    );

    let with = |field: &str, value: Value| {
        let mut claims = claims(subject);
        claims[field] = value;
        sign(Algorithm::EdDSA, "a", &claims, &a)
    };
    let without = |field: &str| {
        let mut claims = claims(subject);
        claims.as_object_mut().expect("object").remove(field);
        sign(Algorithm::EdDSA, "a", &claims, &a)
    };

    // The classic confusion: HMAC "signed" with the public key, which a verifier that let the
    // token choose its algorithm would use as the HMAC secret.
    let public_pem = key_bytes("ed25519-a.pub.pem");
    let hmac_with_public_key = sign(
        Algorithm::HS256,
        "a",
        &claims(subject),
        &EncodingKey::from_secret(&public_pem),
    );
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"a"}"#),
        b64(claims(subject).to_string().as_bytes())
    );
    // The payload of another subject, under the valid token's signature.
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims(Uuid::new_v4()).to_string().as_bytes()),
        parts[2]
    );

    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "expired",
            with("exp", json!(now() - 120)),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            with("nbf", json!(now() + 600)),
            AuthError::NotYetValid,
        ),
        (
            "wrong issuer",
            with("iss", json!("urn:someone:else")),
            AuthError::Issuer,
        ),
        ("no issuer", without("iss"), AuthError::Issuer),
        (
            "wrong audience",
            with("aud", json!("another-app")),
            AuthError::Audience,
        ),
        ("no audience", without("aud"), AuthError::Audience),
        ("no expiry", without("exp"), AuthError::Claims),
        ("no subject", without("sub"), AuthError::Claims),
        (
            "customer sub not a UUID",
            with("sub", json!("alice")),
            AuthError::Subject,
        ),
        (
            "roles not strings",
            with("roles", json!([1, 2])),
            AuthError::Claims,
        ),
        (
            "HS256 with the public key",
            hmac_with_public_key,
            AuthError::Algorithm,
        ),
        ("alg none", unsigned, AuthError::Algorithm),
        (
            "an accepted algorithm the key does not fit",
            sign(Algorithm::ES256, "a", &claims(subject), &p256_key()),
            AuthError::Algorithm,
        ),
        (
            "unknown kid",
            sign(Algorithm::EdDSA, "z", &claims(subject), &a),
            AuthError::UnknownKey,
        ),
        (
            "no kid",
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(subject), &a)
                .expect("signing"),
            AuthError::UnknownKey,
        ),
        (
            "signed by another key",
            sign(
                Algorithm::EdDSA,
                "a",
                &claims(subject),
                &ed_key("ed25519-b.pem"),
            ),
            AuthError::Signature,
        ),
        ("tampered payload", tampered, AuthError::Signature),
        ("garbage", "garbage".into(), AuthError::Malformed),
        (
            "three dots of garbage",
            "a.b.c".into(),
            AuthError::Malformed,
        ),
        ("empty", String::new(), AuthError::Malformed),
    ];
    for (case, token, expected) in cases {
        assert_eq!(verifier.verify(&token).await, Err(expected), "{case}");
    }
}

#[tokio::test]
async fn an_rs256_token_is_refused_when_only_eddsa_and_es256_are_accepted() {
    // A header naming RS256 is refused before any key is looked at.
    let header = b64(br#"{"alg":"RS256","typ":"JWT","kid":"a"}"#);
    let payload = b64(claims(Uuid::new_v4()).to_string().as_bytes());
    let token = format!("{header}.{payload}.c2lnbmF0dXJl");
    assert_eq!(
        local_verifier().verify(&token).await,
        Err(AuthError::Algorithm)
    );
}

#[tokio::test]
async fn operators_may_have_a_non_uuid_subject_and_ops_implies_viewer() {
    let mut claims = claims(Uuid::new_v4());
    claims["sub"] = json!("ops-console@example.com");
    claims["roles"] = json!(["ops", "someone-elses-role"]);
    let token = sign(Algorithm::EdDSA, "a", &claims, &ed_key("ed25519-a.pem"));

    let identity = local_verifier().verify(&token).await.expect("accepted");

    assert_eq!(identity.subject, Uuid::nil());
    assert_eq!(identity.name, "ops-console@example.com");
    assert!(identity.has(Role::Ops) && identity.has(Role::Viewer));
    assert_eq!(require(&identity, Role::Viewer), Ok(()));
    assert_eq!(
        require(&identity, Role::Customer),
        Err(AuthError::Forbidden(Role::Customer))
    );
    let viewer = Roles::default().with(Role::Viewer);
    assert!(viewer.contains(Role::Viewer) && !viewer.contains(Role::Ops));
}

#[tokio::test]
async fn a_nested_role_claim_is_read_by_its_path() {
    let mut settings = settings();
    settings.role_claim = "realm_access.roles".into();
    let mut claims = claims(Uuid::new_v4());
    claims["roles"] = json!(["ops"]);
    claims["realm_access"] = json!({"roles": ["viewer"]});
    let token = sign(Algorithm::EdDSA, "a", &claims, &ed_key("ed25519-a.pem"));

    let identity = Verifier::from_settings(&settings)
        .expect("verifier")
        .verify(&token)
        .await
        .expect("accepted");

    assert!(identity.has(Role::Viewer) && !identity.has(Role::Ops));
}

#[test]
fn hmac_and_unknown_algorithms_are_refused_at_start() {
    for algorithms in ["HS256", "EdDSA,none", "", "RS257"] {
        let mut settings = settings();
        settings.algorithms = algorithms.into();
        assert!(
            Verifier::from_settings(&settings).is_err(),
            "{algorithms:?} must be refused"
        );
    }
    let mut settings = settings();
    settings.public_key_file = key_path("no-such-key.pem");
    assert!(
        Verifier::from_settings(&settings).is_err(),
        "a missing key file"
    );
}

// --- an OpenID Connect issuer's key set -----------------------------------------------------

/// A JWKS endpoint on 127.0.0.1 whose key set the test replaces, counting the fetches.
struct Issuer {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

type IssuerState = (Arc<Mutex<Value>>, Arc<AtomicUsize>);

impl Issuer {
    async fn start(set: Value) -> Self {
        let set = Arc::new(Mutex::new(set));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/jwks.json",
                get(|State((set, fetches)): State<IssuerState>| async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let set = set.lock().expect("lock").clone();
                    axum::Json(set)
                }),
            )
            .with_state((set.clone(), fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/jwks.json",
            listener.local_addr().expect("address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, set, fetches }
    }

    fn serve(&self, set: Value) {
        *self.set.lock().expect("lock") = set;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn verifier(&self, refetch_seconds: u64) -> Verifier {
        let mut settings = settings();
        settings.jwks_url = Some(self.url.clone());
        settings.public_key_file = key_path("no-such-key.pem");
        settings.jwks_refetch_seconds = refetch_seconds;
        Verifier::from_settings(&settings).expect("verifier")
    }
}

fn jwk_a() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": ED_A_X, "kid": "key-a", "alg": "EdDSA", "use": "sig"})
}

fn jwk_b() -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "key-b", "use": "sig"})
}

#[tokio::test]
async fn keys_rotate_through_the_issuers_key_set() {
    // Besides key A: a key for encryption and one of an unknown type, which are skipped.
    let issuer = Issuer::start(json!({"keys": [
        jwk_a(),
        {"kty": "OKP", "crv": "Ed25519", "x": ED_B_X, "kid": "enc", "use": "enc"},
        {"kty": "unknown", "kid": "odd"},
    ]}))
    .await;
    let verifier = issuer.verifier(0);
    let subject = Uuid::new_v4();
    let token_a = sign(
        Algorithm::EdDSA,
        "key-a",
        &claims(subject),
        &ed_key("ed25519-a.pem"),
    );
    let token_b = sign(Algorithm::ES256, "key-b", &claims(subject), &p256_key());

    let identity = verifier.verify(&token_a).await.expect("key A verifies");
    assert_eq!(identity.subject, subject);
    assert_eq!(verifier.verify(&token_b).await, Err(AuthError::UnknownKey));
    let encryption_key = sign(
        Algorithm::EdDSA,
        "enc",
        &claims(subject),
        &ed_key("ed25519-b.pem"),
    );
    assert_eq!(
        verifier.verify(&encryption_key).await,
        Err(AuthError::UnknownKey)
    );

    // The issuer rotates: only key B from now on.
    issuer.serve(json!({"keys": [jwk_b()]}));
    let identity = verifier
        .verify(&token_b)
        .await
        .expect("key B verifies after a refetch");
    assert_eq!(identity.subject, subject);
    // Token A verified (and was remembered) before the rotation: its key left the set, so it
    // is checked again, and refused.
    assert_eq!(
        verifier.verify(&token_a).await,
        Err(AuthError::UnknownKey),
        "the withdrawn key no longer verifies"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_key_set_once_per_interval() {
    let issuer = Issuer::start(json!({"keys": [jwk_a()]})).await;
    let verifier = issuer.verifier(60);
    let a = ed_key("ed25519-a.pem");
    let token_a = sign(Algorithm::EdDSA, "key-a", &claims(Uuid::new_v4()), &a);
    verifier.verify(&token_a).await.expect("key A verifies");
    assert_eq!(issuer.fetches(), 1);

    let bogus: Vec<_> = (0..50)
        .map(|i| {
            let verifier = verifier.clone();
            let token = sign(
                Algorithm::EdDSA,
                &format!("bogus-{i}"),
                &claims(Uuid::new_v4()),
                &a,
            );
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in bogus {
        assert_eq!(task.await.expect("task"), Err(AuthError::UnknownKey));
    }

    assert_eq!(issuer.fetches(), 1, "no fetch within the refetch interval");
    verifier
        .verify(&token_a)
        .await
        .expect("key A still verifies");
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_503_not_a_401() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let mut settings = settings();
    settings.jwks_url = Some(format!("http://{address}/jwks.json"));
    let verifier = Verifier::from_settings(&settings).expect("verifier");
    let token = sign(
        Algorithm::EdDSA,
        "key-a",
        &claims(Uuid::new_v4()),
        &ed_key("ed25519-a.pem"),
    );

    let error = verifier.verify(&token).await.expect_err("refused");

    assert_eq!(error, AuthError::KeysUnavailable);
    let response = axum::response::IntoResponse::into_response(error);
    assert_eq!(response.status(), 503);
}

// --- the extractor --------------------------------------------------------------------------

/// A router with the verifier as its layer: `/me` for anyone with a token, `/ops` for ops.
async fn serve(verifier: Verifier) -> String {
    async fn me(identity: Identity) -> String {
        identity.subject.to_string()
    }
    async fn ops(identity: Identity) -> Result<&'static str, AuthError> {
        require(&identity, Role::Ops)?;
        Ok("done")
    }
    let app = axum::Router::new()
        .route("/me", get(me))
        .route("/ops", get(ops))
        .layer(axum::Extension(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("a JSON problem")
}

#[tokio::test]
async fn the_extractor_answers_401_403_as_problems_with_a_bearer_challenge() {
    let issuer = Issuer::start(json!({"keys": [jwk_a(), jwk_b()]})).await;
    let base = serve(issuer.verifier(0)).await;
    let http = reqwest::Client::new();
    let subject = Uuid::new_v4();
    let customer = sign(Algorithm::ES256, "key-b", &claims(subject), &p256_key());

    let response = http
        .get(format!("{base}/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="shop""#
    );
    let body = problem(response).await;
    assert_eq!(body["type"], "urn:shop:problem:unauthorized");
    assert_eq!(body["status"], 401);

    let mut expired = claims(subject);
    expired["exp"] = json!(now() - 600);
    let expired = sign(
        Algorithm::EdDSA,
        "key-a",
        &expired,
        &ed_key("ed25519-a.pem"),
    );
    let response = http
        .get(format!("{base}/me"))
        .bearer_auth(&expired)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="shop", error="invalid_token", error_description="the token has expired""#
    );
    let body = problem(response).await;
    assert_eq!(body["type"], "urn:shop:problem:unauthorized");
    assert_eq!(body["detail"], "the token has expired");

    let response = http
        .get(format!("{base}/me"))
        .bearer_auth(&customer)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), subject.to_string());

    let response = http
        .get(format!("{base}/ops"))
        .bearer_auth(&customer)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("www-authenticate").is_none());
    let body = problem(response).await;
    assert_eq!(body["type"], "urn:shop:problem:forbidden");
    assert_eq!(body["detail"], "this needs the ops role");

    let mut ops = claims(subject);
    ops["roles"] = json!(["ops"]);
    let ops = sign(Algorithm::EdDSA, "key-a", &ops, &ed_key("ed25519-a.pem"));
    let response = http
        .get(format!("{base}/ops"))
        .bearer_auth(&ops)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}
