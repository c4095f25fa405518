//! `shop token ROLE [UUID]` (behind `./dev token`) prints one token that the services' verifier
//! accepts, and nothing else on standard output; `shop login-url` (behind `./dev up` and
//! `./dev login`) one console sign-in link.

use std::path::Path;
use std::process::{Command, Output};

use platform::auth::{Role, Verifier};
use uuid::Uuid;

/// The test key pair of platform's tests: these tests need no `./dev` key files.
fn key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../platform/tests/keys")
        .join(name)
        .display()
        .to_string()
}

fn shop_token(args: &[&str]) -> Output {
    shop(&[&["token"], args].concat())
}

fn shop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(args)
        .env("SHOP_AUTH__PRIVATE_KEY_FILE", key("ed25519-a.pem"))
        .output()
        .expect("running shop token")
}

fn verifier() -> Verifier {
    let mut settings = platform::Settings::load().expect("settings").auth;
    settings.public_key_file = key("ed25519-a.pub.pem");
    // Whatever the environment says, these tests check the local key pair.
    settings.jwks_url = None;
    Verifier::from_settings(&settings).expect("verifier")
}

/// The one line of standard output, which must be all of it.
fn the_line(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout.clone()).expect("UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stdout:?}");
    assert_eq!(stdout, format!("{}\n", lines[0]), "nothing around the line");
    lines[0].to_owned()
}

#[tokio::test]
async fn a_customer_token_names_the_given_customer() {
    let customer = Uuid::new_v4();
    let token = the_line(&shop_token(&["customer", &customer.to_string()]));

    let identity = verifier().verify(&token).await.expect("accepted");

    assert_eq!(identity.subject, customer);
    assert!(identity.has(Role::Customer) && !identity.has(Role::Viewer));
}

#[tokio::test]
async fn without_a_uuid_each_token_is_a_new_customer() {
    let first = the_line(&shop_token(&["customer"]));
    let second = the_line(&shop_token(&["customer"]));

    let verifier = verifier();
    let first = verifier.verify(&first).await.expect("accepted");
    let second = verifier.verify(&second).await.expect("accepted");

    assert_ne!(first.subject, second.subject);
    assert!(!first.subject.is_nil());
}

#[tokio::test]
async fn viewer_and_ops_tokens_carry_their_roles() {
    let verifier = verifier();
    let viewer = the_line(&shop_token(&["viewer"]));
    let ops = the_line(&shop_token(&["ops"]));

    let viewer = verifier.verify(&viewer).await.expect("accepted");
    let ops = verifier.verify(&ops).await.expect("accepted");

    assert!(viewer.has(Role::Viewer) && !viewer.has(Role::Ops) && !viewer.has(Role::Customer));
    assert!(ops.has(Role::Ops) && ops.has(Role::Viewer) && !ops.has(Role::Customer));
}

#[test]
fn an_unknown_role_or_a_bad_uuid_prints_no_token() {
    for args in [&["admin"][..], &["customer", "alice"], &[]] {
        let output = shop_token(args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn a_login_link_carries_an_operator_token_of_its_own() {
    let link = the_line(&shop(&["login-url", "ada"]));
    let (address, token) = link
        .split_once("/console/login?token=")
        .expect("a console link");
    assert!(address.starts_with("http://127.0.0.1:"), "{link}");
    let identity = verifier().verify(token).await.expect("accepted");
    assert_eq!(identity.name, "ada");
    assert!(identity.has(Role::Ops));
    // Each link is a token with a `jti` of its own: the console lets each sign in once.
    let jti = |token: &str| {
        use base64::Engine as _;
        let claims = token.split('.').nth(1).expect("a JWT");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64url");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("JSON");
        claims["jti"].as_str().expect("a jti").to_owned()
    };
    let other = the_line(&shop(&["login-url", "ada"]));
    let (_, other) = other.split_once("?token=").expect("a console link");
    assert_ne!(jti(token), jti(other));
}
