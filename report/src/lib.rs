//! podtrace-report (being built).
