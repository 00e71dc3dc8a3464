//! # podtrace-recorder-ebpf — the kernel side of the recorder
//!
//! The eBPF programs are C (`bpf/podtrace.bpf.c`), compiled by `build.rs` with clang
//! against a `vmlinux.h` generated from the kernel's BTF. This crate exposes:
//! - [`PODTRACE_BPF_OBJECT`]: the compiled ELF object, ready for `aya::EbpfLoader::load`;
//! - [`event`]: the `#[repr(C)]` mirror of `bpf/event.h` (a test checks size and offsets
//!   against the C compiler's view of the header) and its constants;
//! - [`names`]: the program, map and global names the loader needs.
//!
//! It does not load or attach anything: that is `podtrace-recorder`'s job.
//!
//! ```
//! let obj = podtrace_recorder_ebpf::PODTRACE_BPF_OBJECT;
//! assert_eq!(&obj[..4], b"\x7fELF");
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod event;
pub mod names;
pub mod tls;

/// Forces 8-byte alignment of included bytes (ELF parsing wants aligned section data).
#[repr(C, align(8))]
struct Aligned<B: ?Sized> {
    bytes: B,
}

static OBJECT: &Aligned<[u8]> = &Aligned {
    bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/podtrace.bpf.o")),
};

/// The compiled eBPF object (ELF, BTF and CO-RE relocations included), 8-byte aligned.
pub static PODTRACE_BPF_OBJECT: &[u8] = &OBJECT.bytes;

static FLOOR: &Aligned<[u8]> = &Aligned {
    bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/floor.bpf.o")),
};

/// Empty programs on the recorder's possible hooks (`bpf/floor.bpf.c`: per-syscall
/// tracepoints on `write`, `tp_btf` sys_enter/sys_exit), for benchmarks that separate what
/// a hook costs from what podtrace's code adds (`names::FLOOR_*`). Not used by the recorder.
pub static FLOOR_BPF_OBJECT: &[u8] = &FLOOR.bytes;

/// The C header of the event layout, for tools that want to decode events themselves.
pub const EVENT_H: &str = include_str!("../bpf/event.h");
