//! The integration tests of `podtrace-analyzer`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod golden_support;

mod golden;
mod grpc_golden;
mod http2_tshark;
mod import_curl;
mod k8s_objects;
mod mysql_golden;
mod nginx;
mod parts;
mod pipeline;
mod postgres_golden;
mod redis_golden;
mod routes;
mod tshark_crosscheck;
