//! podtrace-analyzer (being built).
