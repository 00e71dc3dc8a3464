//! podtrace-export (being built).
