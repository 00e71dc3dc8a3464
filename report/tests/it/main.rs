//! The integration tests of `podtrace-report`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod common;

mod browser;
mod render;
