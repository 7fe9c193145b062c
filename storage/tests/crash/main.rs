//! The store's crash tests (cargo feature `failpoints`), linked as one
//! binary: a 3-peer child process aborted at every persist step (`crash`),
//! and one peer crashed while the others go on (`crash_one_peer`).
//! Without the feature the binary is empty.
#![cfg(feature = "failpoints")]

#[path = "../child/mod.rs"]
mod child;
mod crash;
mod crash_one_peer;
#[path = "../sim/mod.rs"]
mod sim;
