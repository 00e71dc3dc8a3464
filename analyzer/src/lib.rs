//! podtrace-analyzer (being built).
pub mod context;
pub mod http1;
pub mod reassemble;
pub mod sample;
