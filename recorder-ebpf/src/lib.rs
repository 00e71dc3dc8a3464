//! podtrace-recorder-ebpf (being built).
