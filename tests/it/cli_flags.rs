//! The CLI contract: flag names, env vars, validation and exit codes (CONTRACTS.md, CLI).

use std::process::{Command, Output};

fn podtrace(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podtrace"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PODTRACE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run podtrace")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_shows_examples_for_every_subcommand() {
    for sub in ["record", "analyze", "inspect", "import"] {
        let o = podtrace(&[sub, "--help"], &[]);
        assert!(o.status.success(), "{sub} --help failed");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("Examples:"),
            "{sub} --help has no examples:\n{out}"
        );
        assert!(
            out.contains(&format!("podtrace {sub}")),
            "{sub} example missing"
        );
    }
    let o = podtrace(&["--help"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--tracing",
        "--tracing-otlp-endpoint",
        "--tracing-jaeger-endpoint",
        "--tracing-splunk-endpoint",
        "--tracing-splunk-token",
        "--tracing-sample-rate",
    ] {
        assert!(out.contains(flag), "top-level --help lacks {flag}");
    }
    for var in [
        "PODTRACE_TRACING_ENABLED",
        "PODTRACE_TRACING_OTLP_ENDPOINT",
        "PODTRACE_TRACING_JAEGER_ENDPOINT",
        "PODTRACE_TRACING_SPLUNK_ENDPOINT",
        "PODTRACE_TRACING_SPLUNK_TOKEN",
        "PODTRACE_TRACING_SAMPLE_RATE",
    ] {
        assert!(out.contains(var), "top-level --help lacks {var}");
    }
}

#[test]
fn sample_rate_out_of_range_is_exit_2() {
    for bad in ["1.5", "-0.1", "abc"] {
        let o = podtrace(&["analyze", "x.parquet", "--tracing-sample-rate", bad], &[]);
        assert_eq!(o.status.code(), Some(2), "rate {bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--tracing-sample-rate"),
            "{}",
            stderr(&o)
        );
    }
    let o = podtrace(
        &["analyze", "x.parquet"],
        &[("PODTRACE_TRACING_SAMPLE_RATE", "7")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("outside 0.0 to 1.0"), "{}", stderr(&o));
}

#[test]
fn analysis_window_must_be_positive_seconds() {
    for bad in ["0", "-5", "1.5", "100000"] {
        let flag = format!("--window={bad}");
        let o = podtrace(&["analyze", "x.parquet", &flag], &[]);
        assert_eq!(o.status.code(), Some(2), "window {bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--window"), "{}", stderr(&o));
    }
}

#[test]
fn malformed_urls_are_exit_2() {
    for flag in [
        "--tracing-otlp-endpoint",
        "--tracing-jaeger-endpoint",
        "--tracing-splunk-endpoint",
    ] {
        let o = podtrace(&["analyze", "x.parquet", flag, "otel collector:4318"], &[]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a valid URL"), "{}", stderr(&o));
    }
    let o = podtrace(
        &["analyze", "x.parquet"],
        &[("PODTRACE_TRACING_OTLP_ENDPOINT", "ftp://otel:4318")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn splunk_endpoint_needs_a_token_and_never_prints_it() {
    let o = podtrace(
        &[
            "analyze",
            "x.parquet",
            "--tracing-splunk-endpoint",
            "https://splunk:8088",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--tracing-splunk-token"),
        "{}",
        stderr(&o)
    );

    let secret = "s3cr3t-hec-token-0xdeadbeef";
    let o = podtrace(
        &["analyze", "/nonexistent/cap.parquet", "-vvv"],
        &[
            ("PODTRACE_TRACING_SPLUNK_ENDPOINT", "https://splunk:8088"),
            ("PODTRACE_TRACING_SPLUNK_TOKEN", secret),
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains(secret), "token leaked: {}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
}

#[test]
fn live_mode_needs_a_target() {
    let o = podtrace(&["--tracing"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = podtrace(&["mypod", "--tracing"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("-n"), "{}", stderr(&o));
}

#[test]
fn tracing_enabled_env_is_boolish() {
    let o = podtrace(&[], &[("PODTRACE_TRACING_ENABLED", "maybe")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bash_completions_name_the_subcommands_and_flags() {
    let o = podtrace(&["completions", "bash"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    for word in [
        "record",
        "analyze",
        "inspect",
        "import",
        "--tracing-otlp-endpoint",
    ] {
        assert!(script.contains(word), "completion script lacks {word}");
    }
}
