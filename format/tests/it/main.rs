//! The integration tests of `podtrace-format`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod common;

mod corrupt;
mod crash;
mod duckdb;
mod inspect;
mod projection;
mod rotation;
mod roundtrip;
