//! What the system tests, the cluster drills and the saga benchmark share: the `shop` executable
//! their stacks run ([`test_support::stack`]) and the invariants.
// Each test binary uses part of this module.
#![allow(dead_code)]

pub mod invariants;
pub mod replay;

use test_support::stack::Binary;

/// The executable every [`test_support::stack::Stack`] here runs, and where its processes log.
pub const SHOP: Binary = Binary {
    path: env!("CARGO_BIN_EXE_shop"),
    target_tmpdir: env!("CARGO_TARGET_TMPDIR"),
};
