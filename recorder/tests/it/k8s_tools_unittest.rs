//! Runs the Python unit tests of the Kubernetes test tools (tools/k8s-apiserver,
//! tools/fakenode) so `cargo test` covers the stand-ins the other tests rely on.

use crate::k8s_support;

use std::process::Command;
use std::time::Duration;

use k8s_support::{have, repo, run};

fn unittest(dir: &str) {
    if !have("python3", &["--version"]) {
        return;
    }
    let r = run(
        Command::new("python3")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["-m", "unittest", "discover", "-s"])
            .arg(repo().join(dir))
            .args(["-p", "test_*.py"]),
        Duration::from_secs(120),
    );
    assert!(r.ok, "{dir} unit tests failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("\nOK"), "{}", r.stderr);
}

#[test]
fn apiserver_python_unit_tests() {
    unittest("tools/k8s-apiserver");
}

#[test]
fn fakenode_python_unit_tests() {
    unittest("tools/fakenode");
}
