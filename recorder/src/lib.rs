//! # podtrace-recorder — eBPF socket capture of pods into capture files
//!
//! Loads the programs of `podtrace-recorder-ebpf`, targets a pod's cgroups, reads the ring
//! buffer and writes rows through `podtrace-format`.

pub mod cgroups;
pub mod k8s;
