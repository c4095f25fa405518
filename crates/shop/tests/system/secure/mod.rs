//! The servers over TLS with credentials, by configuration only (SYSTEM.md §9): each server
//! refuses a client without the right credentials, and the saga runs with the services
//! configured for them. One file per server, the read models on the TLS servers of Redis and
//! MongoDB together (`projections`), and the saga with every server over TLS (`everywhere`).

use std::path::{Path, PathBuf};

mod everywhere;
mod kafka;
mod mongodb;
mod postgres;
mod projections;
mod redis;

/// Where `./dev` keeps the local certificate authority, the server certificates and the
/// credentials it makes (`ensure_tls`).
fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/tls")
}
