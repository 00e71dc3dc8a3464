//! The integration tests of `podtrace-export`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod common;

mod export_all;
mod export_faults;
mod export_jaeger;
mod export_otlp;
mod export_splunk;
mod jaeger_thrift_gen;
