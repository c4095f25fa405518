//! What the system and fault tests share: a stack of real processes and the invariants.
// Each test binary uses part of this module.
#![allow(dead_code)]

pub mod invariants;
pub mod replay;
pub mod stack;
