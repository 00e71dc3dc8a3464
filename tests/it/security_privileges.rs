//! Privileges: `record` as an unprivileged user (uid 65534, no capabilities) fails with
//! exit 2 and an error naming CAP_BPF / CAP_PERFMON and leaves no file; `inspect` and
//! `analyze` work unprivileged on a capture that user can read.

use crate::reliability_support as support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use support::*;

/// Runs podtrace as nobody without any capability.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args(["--bounding-set=-all", "--"])
        .arg(bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

#[test]
fn unprivileged_record_fails_clearly_and_analysis_works() {
    if !is_root() || !have("setpriv") {
        eprintln!("SKIPPED security_privileges: needs root (to drop to nobody) and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_cap = dir.path().join("nobody.parquet");
    let o = as_nobody(&[
        "record",
        "--pid",
        &std::process::id().to_string(),
        "-o",
        s(&out_cap),
        "--duration",
        "2s",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_cap.exists(), "an empty capture was left behind");

    // A capture made by root, handed over to nobody (0600 → chown).
    let cap = dir.path().join("chain.parquet");
    let pcap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chain/chain.pcap");
    let o = podtrace(&["import", s(&pcap), "-o", s(&cap)]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::os::unix::fs::chown(&cap, Some(65534), Some(65534)).unwrap();
    let o = as_nobody(&["inspect", s(&cap)]);
    assert!(o.status.success(), "inspect as nobody: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("socket_data"));
    let out = dir.path().join("out");
    let o = as_nobody(&["analyze", s(&cap), "--out", s(&out)]);
    assert!(o.status.success(), "analyze as nobody: {}", stderr(&o));
    assert!(
        std::fs::read_to_string(out.join("spans.json"))
            .unwrap()
            .len()
            > 10
    );

    // Not readable by nobody: a clear error naming the file, exit 2.
    std::os::unix::fs::chown(&cap, Some(0), Some(0)).unwrap();
    let o = as_nobody(&["inspect", s(&cap)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(s(&cap)), "{}", stderr(&o));
}
