//! The Rust mirror `PtEvent` must have the size and field offsets the C compiler gives
//! `struct pt_event` in `bpf/event.h`: compile a tiny C program with the host compiler
//! that prints them, and compare.

use podtrace_recorder_ebpf::event::PtEvent;
use std::mem::{offset_of, size_of};
use std::process::Command;

const FIELDS: &[&str] = &[
    "ts_ns",
    "cgroup_id",
    "sock",
    "pid",
    "tid",
    "kind",
    "syscall",
    "ret",
    "cap_len",
    "flags",
    "fd",
    "family",
    "lport",
    "rport",
    "role",
    "direction",
    "cpu",
    "laddr",
    "raddr",
    "comm",
];

fn rust_offsets() -> Vec<usize> {
    vec![
        offset_of!(PtEvent, ts_ns),
        offset_of!(PtEvent, cgroup_id),
        offset_of!(PtEvent, sock),
        offset_of!(PtEvent, pid),
        offset_of!(PtEvent, tid),
        offset_of!(PtEvent, kind),
        offset_of!(PtEvent, syscall),
        offset_of!(PtEvent, ret),
        offset_of!(PtEvent, cap_len),
        offset_of!(PtEvent, flags),
        offset_of!(PtEvent, fd),
        offset_of!(PtEvent, family),
        offset_of!(PtEvent, lport),
        offset_of!(PtEvent, rport),
        offset_of!(PtEvent, role),
        offset_of!(PtEvent, direction),
        offset_of!(PtEvent, cpu),
        offset_of!(PtEvent, laddr),
        offset_of!(PtEvent, raddr),
        offset_of!(PtEvent, comm),
    ]
}

#[test]
fn rust_mirror_matches_c_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("offsets.c");
    let bin = dir.path().join("offsets");
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include \"event.h\"\nint main(void) {\n  printf(\"size %zu\\n\", sizeof(struct pt_event));\n",
    );
    for f in FIELDS {
        c.push_str(&format!(
            "  printf(\"{f} %zu\\n\", offsetof(struct pt_event, {f}));\n"
        ));
    }
    c.push_str("  printf(\"snaplen %d\\n\", PT_MAX_SNAPLEN);\n");
    for (name, _) in constants() {
        c.push_str(&format!("  printf(\"{name} %d\\n\", {name});\n"));
    }
    c.push_str("  return 0;\n}\n");
    std::fs::write(&src, c).expect("write offsets.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = match Command::new(&cc)
        .arg("-I")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf"))
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no host C compiler `{cc}` ({e}); cannot check the event layout");
            return;
        }
    };
    assert!(status.success(), "compiling the offsets program failed");
    let out = Command::new(&bin).output().expect("run offsets program");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let values: Vec<(String, usize)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("key value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect();
    assert_eq!(values[0], ("size".to_string(), size_of::<PtEvent>()));
    assert_eq!(
        size_of::<PtEvent>() % 8,
        0,
        "header must be padded to 8 bytes"
    );
    for ((name, c_off), (field, rust_off)) in values[1..=FIELDS.len()]
        .iter()
        .zip(FIELDS.iter().zip(rust_offsets()))
    {
        assert_eq!(name, field);
        assert_eq!(*c_off, rust_off, "offset of {field}");
    }
    assert_eq!(
        values[FIELDS.len() + 1],
        (
            "snaplen".to_string(),
            podtrace_recorder_ebpf::event::MAX_SNAPLEN as usize
        )
    );
    for ((name, value), (c_name, c_value)) in constants().iter().zip(&values[FIELDS.len() + 2..]) {
        assert_eq!(name, c_name);
        assert_eq!(
            *value as usize, *c_value,
            "{name} differs between C and Rust"
        );
    }
    assert_eq!(values.len(), FIELDS.len() + 2 + constants().len());
}

/// Constants of event.h and their Rust mirrors.
fn constants() -> Vec<(&'static str, u32)> {
    use podtrace_recorder_ebpf::event as e;
    vec![
        ("PT_MAX_IOV", e::MAX_IOV),
        ("PT_FLAG_TRUNCATED", e::FLAG_TRUNCATED),
        ("PT_FLAG_READ_ERROR", e::FLAG_READ_ERROR),
        ("PT_FLAG_GAP", e::FLAG_GAP),
        ("PT_FLAG_CUT_SNAPLEN", e::FLAG_CUT_SNAPLEN),
        ("PT_FLAG_CUT_NOT_USER", e::FLAG_CUT_NOT_USER),
        ("PT_FLAG_CUT_IOV_LIMIT", e::FLAG_CUT_IOV_LIMIT),
        ("PT_FLAG_CUT_BEYOND", e::FLAG_CUT_BEYOND),
        ("PT_FLAG_NO_TASK", e::FLAG_NO_TASK),
        ("PT_FLAG_SEQ", e::FLAG_SEQ),
        ("PT_FLAG_WSEQ", e::FLAG_WSEQ),
        ("PT_CTR_TRUNCATED", e::CTR_TRUNCATED),
        ("PT_CTR_SCRATCH_BUSY", e::CTR_SCRATCH_BUSY),
        ("PT_CTR_TRUNC_SNAPLEN", e::CTR_TRUNC_SNAPLEN),
        ("PT_CTR_TRUNC_READ_ERROR", e::CTR_TRUNC_READ_ERROR),
        ("PT_CTR_TRUNC_NOT_USER", e::CTR_TRUNC_NOT_USER),
        ("PT_CTR_TRUNC_IOV_LIMIT", e::CTR_TRUNC_IOV_LIMIT),
        ("PT_CTR_TRUNC_BEYOND", e::CTR_TRUNC_BEYOND),
        ("PT_CTR_MAX", e::CTR_MAX),
    ]
}
