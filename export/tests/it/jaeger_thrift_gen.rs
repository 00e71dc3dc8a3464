//! The checked-in Jaeger Thrift code is what `tools/gen-jaeger-thrift.sh` generates from
//! `export/thrift/jaeger.thrift` (skipped, loudly, without Debian `thrift-compiler`).

use std::path::Path;
use std::process::Command;

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("thrift")
        .args(["--gen", "rs", "-out"])
        .arg(out.path())
        .arg(root.join("thrift/jaeger.thrift"))
        .output();
    let run = match run {
        Ok(r) if r.status.success() => r,
        Ok(r) => panic!("thrift failed: {}", String::from_utf8_lossy(&r.stderr)),
        Err(_) => {
            eprintln!("SKIPPING: `thrift` not installed (apt-get install thrift-compiler)");
            return;
        }
    };
    drop(run);
    let fresh = std::fs::read_to_string(out.path().join("jaeger.rs")).unwrap();
    let checked_in = std::fs::read_to_string(root.join("src/jaeger/gen.rs")).unwrap();
    let body = checked_in
        .split_once("\n\n")
        .map(|(_header, body)| body)
        .unwrap_or_default();
    assert!(
        body == fresh,
        "export/src/jaeger/gen.rs is stale: run `sh tools/gen-jaeger-thrift.sh`"
    );
}
