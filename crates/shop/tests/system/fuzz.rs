//! An outside fuzzer over the whole API (issue #25): Schemathesis reads `/api/openapi.json`
//! from the gateway of a stack of real processes (every component, the projections included)
//! and sends what the document allows and what it forbids, checking every answer against it.
//! It fails on any server error, any status, header, content type or body the document does
//! not declare, any schema-valid request the server refuses and any schema-invalid one it
//! accepts: the document has to state every rule the server enforces.
//!
//! It runs twice, as a customer and as an operator, since most operations answer a customer
//! other than an operator (a customer's routes are 403 to an operator and the other way
//! round): each run reaches the other's operations only up to their role check.
//!
//! `./dev test` installs Schemathesis (`./dev fuzz-setup`, a virtualenv under `.local/opt`) and
//! names it in `FUZZ_SCHEMATHESIS`, so there it always runs. Run alone (`cargo test`) without
//! that install, the test says so and passes without fuzzing.
//!
//! The run is bounded and repeatable: a fixed seed, a fixed number of examples per operation,
//! one worker (concurrent workers would interleave requests differently from run to run) and
//! no example database carried between runs. Both runs together take well under a minute.
//! The test runs alone ([`Stack::start_alone`]): its thousands of requests on a two-core host
//! would stretch the time bounds of the tests beside it.
//!
//! Every check of `--checks all` applies here, so none is excluded:
//! - `not_a_server_error` and the conformance checks (status code, content type, headers,
//!   response schema): the document is what clients build against;
//! - `positive_data_acceptance` and `negative_data_rejection`: the document has to state every
//!   rule the server enforces (ranges, lengths, patterns, `minItems`), and the server has to
//!   enforce every rule the document states; 401, 403, 404 and 409 count as accepted;
//! - `missing_required_header`, `unsupported_method` and `allow_header_conformance`: a 405 names
//!   what the resource takes (`platform::server`);
//! - `ignored_auth`: an operation whose `security` asks for the bearer token refuses a request
//!   without one or with a bad one (the token sent is valid, so a 2xx is probed);
//! - `object_level_authorization` (the customer run): what customer A reads of their own, B must
//!   not get, on every operation that declares `security`;
//! - `use_after_free` and `ensure_resource_availability`: stateful, over the links Schemathesis
//!   infers from the answers (an order's `Location`, its id in a list).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::SHOP;
use serde_json::json;
use test_support::eventually;
use test_support::stack::Stack;

/// Every component: the gateway last, so that it finds the others.
const COMPONENTS: [&str; 5] = ["order", "stock", "payment", "projections", "gateway"];

/// Test cases per operation and phase. Enough for the fuzzer to find the rules the document
/// left out (each took it a handful of examples), few enough for both runs to stay near a minute.
/// A line names a product by id, and which ids exist is the catalog's state, not the
/// document's: a schema-valid line of a product the catalog does not know is refused with 422
/// `unknown-product`, as the document says. Placing and adding accept that answer to
/// schema-valid data too; every other operation must accept what its schema admits.
const CATALOG_REFUSALS: &str = "[[operations]]
include-operation-id = [\"placeOrder\", \"addItem\"]
checks.positive_data_acceptance.expected-statuses = \
    [\"2xx\", \"3xx\", 401, 403, 404, 409, 422, 429, \"5xx\"]
";

const MAX_EXAMPLES: &str = "100";
const SEED: &str = "25";

/// The Schemathesis executable: the one `./dev test` names, or the one `./dev fuzz-setup`
/// installs if it is there.
fn schemathesis() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os("FUZZ_SCHEMATHESIS") {
        let named = PathBuf::from(named);
        assert!(
            named.exists(),
            "FUZZ_SCHEMATHESIS names {}, which does not exist (./dev fuzz-setup installs it)",
            named.display()
        );
        return Some(named);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.local/opt/schemathesis/bin/schemathesis");
    installed.exists().then_some(installed)
}

/// Who a run acts as.
enum Caller {
    /// One `Authorization` for every request.
    Token(String),
    /// Customer A for every request; customer B only in the object-level authorization check,
    /// which reads what A made as B and fails if B gets it (I8: another customer's order is
    /// 404).
    Customers { a: String, b: String },
}

/// One run over the whole document; its report, as `Err` when it found anything.
fn fuzz(program: &Path, schema: &str, caller: &Caller, who: &str) -> Result<String, String> {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{who}"));
    std::fs::create_dir_all(&work).unwrap();
    let mut command = Command::new(program);
    command.current_dir(&work);
    let mut config = String::from(CATALOG_REFUSALS);
    if let Caller::Customers { a, b } = caller {
        // Several identities need Schemathesis' configuration file and a Web Fuzzing Commons
        // auth document.
        let header = |value: &str| json!([{ "name": "Authorization", "value": value }]);
        let users = json!({ "auth": [
            { "name": "customer-a", "fixedHeaders": header(a) },
            { "name": "customer-b", "fixedHeaders": header(b) },
        ]});
        std::fs::write(work.join("users.json"), users.to_string()).unwrap();
        config.push_str(
            "[auth.wfc]\npath = \"users.json\"\nuser = \"customer-a\"\n\
             peers = [\"customer-a\", \"customer-b\"]\n",
        );
    }
    std::fs::write(work.join("schemathesis.toml"), config).unwrap();
    command.args(["--config-file", "schemathesis.toml"]);
    command
        .args(["run", schema, "--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--generation-database", "none"])
        .args(["--request-timeout", "10", "--no-color"])
        // The report shows the requests as sent (the tokens are the test key's, good for an
        // hour), so every finding can be replayed with the curl line it prints.
        .args(["--output-sanitize", "false"]);
    if let Caller::Token(authorization) = caller {
        command.args(["--header", &format!("Authorization: {authorization}")]);
    }
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let report = format!(
        "schemathesis as {who} ({:.0?}, {}):\n{command:?}\n{}\n{}",
        started.elapsed(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if output.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_document_does_not_allow() {
    let Some(program) = schemathesis() else {
        eprintln!(
            "SKIPPED schemathesis_finds_nothing_the_document_does_not_allow: Schemathesis is not \
             installed (./dev fuzz-setup installs it; ./dev test does so and always runs this test)"
        );
        return;
    };
    let stack = Stack::start_alone(SHOP, &COMPONENTS).await;
    eventually(Duration::from_secs(60), "the stack to be ready", || async {
        let ready = stack.client.get(stack.api("/health/ready")).send().await?;
        Ok(ready.status().is_success().then_some(()))
    })
    .await
    .unwrap();
    let schema = stack.api("/api/openapi.json");
    let customers = Caller::Customers {
        a: test_support::customer().1,
        b: test_support::customer().1,
    };
    let operator = Caller::Token(test_support::operator());

    let runs = [("customer", customers), ("operator", operator)];
    let outcomes = tokio::task::spawn_blocking(move || {
        runs.map(|(who, caller)| fuzz(&program, &schema, &caller, who))
    })
    .await
    .unwrap();
    stack.remove().await.unwrap();

    let mut failed = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(report) => eprintln!("{report}"),
            Err(report) => failed.push(report),
        }
    }
    assert!(
        failed.is_empty(),
        "Schemathesis found requests the document does not describe:\n{}",
        failed.join("\n")
    );
}
