//! The integration tests of `podtrace-recorder`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod ebpf_util;
mod k8s_support;

mod cgroups_fakenode;
mod ebpf_bytes_exact;
mod ebpf_http1;
mod ebpf_limits;
mod ebpf_stress;
mod ebpf_targets;
mod ebpf_tls;
mod k8s_apiserver;
mod k8s_tools_unittest;
