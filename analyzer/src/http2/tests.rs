//! Unit tests of the HTTP/2 stage: HPACK robustness and frame-level exchanges.
