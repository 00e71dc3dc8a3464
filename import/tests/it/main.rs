//! The integration tests of `podtrace-import`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod common;

mod bad_input;
mod fixture_http1;
mod k8s_objects;
mod real_http1;
mod synthetic_pcap;
