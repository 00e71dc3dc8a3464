//! Build script: compiles `bpf/*.bpf.c` into eBPF objects in `OUT_DIR`.
//!
//! Steps: `vmlinux.h` from the running kernel's BTF (`bpftool btf dump file
//! /sys/kernel/btf/vmlinux format c`), or copied from `PODTRACE_VMLINUX_H`, or dumped from
//! the BTF file named by `PODTRACE_BTF`; then `clang -target bpf -D__TARGET_ARCH_x86 -O2 -g`.
//! Missing clang, bpftool or BTF stops the build with a message saying what to install.
//! Only x86_64 targets are supported (the programs use x86-64 syscall numbers and
//! registers); any other target stops the build with a message saying so.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs to compile (file stem in `bpf/`).
/// `floor` holds empty programs for the benchmark's hook-cost floors, not the recorder.
const PROGRAMS: &[&str] = &["podtrace", "floor"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bpf_dir = manifest.join("bpf");
    println!("cargo:rerun-if-env-changed=PODTRACE_VMLINUX_H");
    println!("cargo:rerun-if-env-changed=PODTRACE_BTF");
    println!("cargo:rerun-if-env-changed=PODTRACE_CLANG");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    for entry in fs::read_dir(&bpf_dir).expect("read bpf/") {
        let path = entry.expect("bpf/ entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
    }

    if let Err(e) = build(&bpf_dir, &out) {
        // A build script reports errors by panicking; make the message the whole story.
        panic!("\n\npodtrace-recorder-ebpf: {e}\n\n");
    }
}

fn build(bpf_dir: &Path, out: &Path) -> Result<(), String> {
    let vmlinux = out.join("vmlinux.h");
    write_vmlinux_h(&vmlinux)?;
    let clang = env::var("PODTRACE_CLANG").unwrap_or_else(|_| "clang".to_string());
    // The programs read x86-64 syscall arguments (`pt_regs` fields di/si/dx/r10, orig_ax)
    // and compare x86-64 syscall numbers: they are written for x86_64 only. Another target
    // (arm64 has other numbers and registers) stops the build here rather than loading
    // programs that would misread every call.
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") | Err(_) => "x86",
        Ok(other) => {
            return Err(format!(
                "the eBPF programs are written for x86_64 (its syscall numbers and pt_regs registers); target architecture {other} is not supported"
            ))
        }
    };
    for prog in PROGRAMS {
        let src = bpf_dir.join(format!("{prog}.bpf.c"));
        let obj = out.join(format!("{prog}.bpf.o"));
        let output = Command::new(&clang)
            .args(["-target", "bpf", &format!("-D__TARGET_ARCH_{arch}"), "-O2", "-g"])
            .arg("-Wall")
            .arg("-Werror")
            .arg("-I")
            .arg(out)
            .arg("-I")
            .arg(bpf_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .map_err(|e| {
                format!(
                    "cannot run `{clang}` ({e}): install clang (Debian: apt-get install clang llvm libbpf-dev) or set PODTRACE_CLANG"
                )
            })?;
        if !output.status.success() {
            return Err(format!(
                "clang failed on {}:\n{}\n(libbpf headers come from libbpf-dev)",
                src.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

fn write_vmlinux_h(dst: &Path) -> Result<(), String> {
    if let Ok(h) = env::var("PODTRACE_VMLINUX_H") {
        println!("cargo:rerun-if-changed={h}");
        fs::copy(&h, dst).map_err(|e| format!("PODTRACE_VMLINUX_H={h}: {e}"))?;
        return Ok(());
    }
    let btf = env::var("PODTRACE_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".to_string());
    if !Path::new(&btf).exists() {
        return Err(format!(
            "kernel BTF {btf} not found: the kernel needs CONFIG_DEBUG_INFO_BTF=y, or set \
             PODTRACE_BTF to a BTF file or PODTRACE_VMLINUX_H to a generated vmlinux.h"
        ));
    }
    let output = Command::new("bpftool")
        .args(["btf", "dump", "file", &btf, "format", "c"])
        .output()
        .map_err(|e| {
            format!("cannot run `bpftool` ({e}): install bpftool, or set PODTRACE_VMLINUX_H")
        })?;
    if !output.status.success() {
        return Err(format!(
            "bpftool btf dump of {btf} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::write(dst, &output.stdout).map_err(|e| format!("write {}: {e}", dst.display()))
}
