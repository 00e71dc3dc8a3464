//! # podtrace-cluster — podtrace's analysis on an Apache DataFusion Ballista cluster
//!
//! The `podtrace-cluster` binary (docs/scale-out.md): thin wrappers of Ballista's
//! scheduler and executor with podtrace's plan node and codec registered
//! ([`serve`]), and the client side of `podtrace analyze --cluster` ([`client`]), which
//! `podtrace` runs as a child process so that the `podtrace` binary itself does not
//! link DataFusion. The plan node ([`plan::ExchangeScanExec`]) runs the analyzer's front
//! per capture group; `podtrace` merges the groups' results and runs the rest of the
//! analysis and every output exactly as locally.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod chunks;
pub mod client;
pub mod codec;
pub mod plan;
pub mod serve;
