//! podtrace-analyzer (being built).
pub mod context;
pub mod enrich;
pub mod exchange;
pub mod graph;
pub mod http1;
pub mod reassemble;
pub mod sample;
pub mod span;
