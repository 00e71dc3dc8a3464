//! podtrace-analyzer (being built).
pub mod context;
pub mod exchange;
pub mod http1;
pub mod reassemble;
pub mod sample;
pub mod span;
