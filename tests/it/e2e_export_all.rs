//! End to end: `podtrace analyze` with the three exporters at once and
//! `--tracing-sample-rate 0.5` on the checked-in `fixtures/chain` capture (9 traces, 70 spans).
//!
//! Each receiver (`tools/receivers/`: the OTLP sink decoding with `opentelemetry-proto`, the
//! Jaeger collector decoding Thrift with `jaeger-client`, the Splunk HEC stand-in) must get
//! exactly the same set of (trace id, span id) pairs, each once, and that set must be the
//! spans of the unsampled analysis (rate 1.0, `spans.json`) filtered by the sampling rule as
//! this file implements it independently: sampled iff the low 56 bits of the trace id, read
//! as a big-endian integer, are below `rate × 2^56`. The rule is first checked against the
//! `sampling` cases of the shared vectors (`analyzer/tests/data/trace_context.json`).
//! The same holds with the `PODTRACE_TRACING_*` environment variables instead of flags, and
//! a flag beats its environment variable.
//!
//! Needs only the Python venv with the test peers (no root); skips loudly without it.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{first_line, listening_port, podtrace, read_spans, repo, run, venv, Proc};

/// The sample rate every exporting run uses.
const RATE: f64 = 0.5;
/// The HEC token the Splunk stand-in accepts.
const TOKEN: &str = "e2e-export-all-token";

/// A (trace id, span id) pair, both lowercase hex.
type Key = (String, String);

/// The sampling rule, written here independently of the analyzer.
mod rule {
    use serde_json::Value;

    /// Sampled iff (low 56 bits of the 16-byte trace id, big-endian) < `rate` × 2^56.
    pub fn sampled(trace_id_hex: &str, rate: f64) -> bool {
        assert_eq!(trace_id_hex.len(), 32, "trace id {trace_id_hex:?}");
        // The low 56 bits are the last 7 bytes = the last 14 hex digits.
        let low = u64::from_str_radix(&trace_id_hex[18..], 16)
            .unwrap_or_else(|e| panic!("trace id {trace_id_hex:?}: {e}"));
        // rate × 2^56 is exact (a power-of-two scaling), and for an integer `low`,
        // low < t ⇔ low < ⌈t⌉, which is an integer ≤ 2^56: compare exactly in u64.
        let threshold = (rate * (1u64 << 56) as f64).ceil() as u64;
        low < threshold
    }

    /// Checks [`sampled`] against every `sampling` case of the shared vectors; returns how
    /// many cases there were.
    pub fn check_against_vectors() -> usize {
        let path = super::repo().join("analyzer/tests/data/trace_context.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let vectors: Value = serde_json::from_str(&text).expect("vectors are JSON");
        let cases = vectors["sampling"]["cases"]
            .as_array()
            .expect("sampling.cases is an array");
        assert!(!cases.is_empty(), "no sampling vectors");
        for case in cases {
            let id = case["trace_id"].as_str().expect("trace_id");
            let rate = case["rate"].as_f64().expect("rate");
            let want = case["sampled"].as_bool().expect("sampled");
            assert_eq!(sampled(id, rate), want, "sampling vector {case}");
        }
        cases.len()
    }
}

/// One receiver from `tools/receivers/`, killed on drop.
struct Receiver {
    _proc: Proc,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(venv: &Path, script: &str, args: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new(venv.join("bin/python"))
            .arg(repo().join("tools/receivers").join(script))
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc::new(child, "KILL", Duration::from_secs(2));
        let line = first_line(stdout, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{script} not ready within 20 s"));
        let port = listening_port(&line)
            .unwrap_or_else(|| panic!("{script} printed {line:?} instead of LISTENING <port>"));
        Receiver {
            _proc: proc,
            port,
            out,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The decoded spans (HEC: the events' `event` objects), request lines left out.
    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).expect("receiver wrote JSON"))
            .filter(|v| v.get("_request").is_none())
            .map(|v| match v.get("event") {
                Some(event) => event.clone(),
                None => v,
            })
            .collect()
    }

    /// Waits (bounded) until `n` spans arrived, then a little longer for strays; returns
    /// their keys in arrival order.
    fn keys(&self, n: usize) -> Vec<Key> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.spans().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.spans()
            .iter()
            .map(|s| {
                (
                    s["trace_id"].as_str().unwrap_or_default().to_string(),
                    s["span_id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// The three receivers of one run.
struct Receivers {
    otlp: Receiver,
    jaeger: Receiver,
    splunk: Receiver,
}

impl Receivers {
    fn start(venv: &Path) -> Receivers {
        Receivers {
            otlp: Receiver::start(venv, "otlp_sink.py", &[]),
            jaeger: Receiver::start(venv, "jaeger_collector.py", &[]),
            splunk: Receiver::start(venv, "hec.py", &["--token", TOKEN]),
        }
    }

    /// Each receiver's keys, asserting every span arrived exactly once.
    fn received(&self, n: usize) -> [(&'static str, BTreeSet<Key>); 3] {
        [
            ("otlp", &self.otlp),
            ("jaeger", &self.jaeger),
            ("splunk", &self.splunk),
        ]
        .map(|(name, r)| {
            let keys = r.keys(n);
            let set: BTreeSet<Key> = keys.iter().cloned().collect();
            assert_eq!(set.len(), keys.len(), "{name}: a span arrived twice");
            (name, set)
        })
    }
}

/// The imported fixture capture plus what the unsampled analysis and the rule predict.
struct Fixture {
    dir: tempfile::TempDir,
    capture: PathBuf,
    /// Every span of the rate-1.0 analysis.
    all: BTreeSet<Key>,
    /// The subset the rule keeps at [`RATE`].
    predicted: BTreeSet<Key>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let capture = dir.path().join("chain.parquet");
        let fixtures = repo().join("fixtures/chain");
        let out = run(
            podtrace()
                .arg("import")
                .arg(fixtures.join("chain.pcap"))
                .arg("-o")
                .arg(&capture)
                .arg("--k8s-objects")
                .arg(fixtures.join("k8s-objects.json")),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "podtrace import failed");

        let full = dir.path().join("full");
        let summary = analyze(&mut analyze_cmd(&capture, &full));
        assert_eq!(summary["stats"]["sampled_out"], 0, "rate 1.0 drops nothing");
        let spans = read_spans(&full);
        assert_eq!(summary["spans_exported"], spans.len());
        let all: BTreeSet<Key> = spans
            .iter()
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect();
        assert_eq!(all.len(), spans.len(), "span keys are unique");
        let predicted: BTreeSet<Key> = all
            .iter()
            .filter(|(trace, _)| rule::sampled(trace, RATE))
            .cloned()
            .collect();
        let traces = |set: &BTreeSet<Key>| set.iter().map(|k| &k.0).collect::<BTreeSet<_>>().len();
        eprintln!(
            "fixture: {} spans in {} traces; rate {RATE} keeps {} spans in {} traces",
            all.len(),
            traces(&all),
            predicted.len(),
            traces(&predicted)
        );
        assert!(!predicted.is_empty(), "the fixture must keep some traces");
        assert!(
            predicted.len() < all.len() && traces(&predicted) < traces(&all),
            "the fixture must drop some traces"
        );
        Fixture {
            dir,
            capture,
            all,
            predicted,
        }
    }
}

/// `podtrace analyze CAPTURE --out DIR` plus the caller's flags and variables.
fn analyze_cmd(capture: &Path, out: &Path) -> Command {
    let mut cmd = podtrace();
    cmd.arg("analyze").arg(capture).arg("--out").arg(out);
    cmd
}

/// Runs an [`analyze_cmd`] with `--json` (bounded), asserts exit 0 and returns the summary.
fn analyze(cmd: &mut Command) -> Value {
    let out = run(cmd.arg("--json"), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "podtrace analyze exited with {}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts one exporting run: exit 0 (in [`analyze`]), the summary's accounting, and that
/// every receiver got exactly the predicted set.
fn check_run(fixture: &Fixture, receivers: &Receivers, summary: &Value, what: &str) {
    let n = fixture.predicted.len();
    assert_eq!(summary["spans_exported"], n, "{what}: spans_exported");
    assert_eq!(
        summary["stats"]["sampled_out"],
        fixture.all.len() - n,
        "{what}: sampled_out"
    );
    let reports = summary["exporters"].as_array().expect("exporters array");
    let names: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["exporter"].as_str())
        .collect();
    assert_eq!(names, ["otlp", "jaeger", "splunk"], "{what}: exporters");
    for r in reports {
        assert_eq!(r["error"], Value::Null, "{what}: {r}");
        assert_eq!(r["spans_sent"], n, "{what}: {r}");
        assert_eq!(r["dropped_spans"], 0, "{what}: {r}");
    }
    let received = receivers.received(n);
    for (name, got) in &received {
        assert_eq!(
            got, &received[0].1,
            "{what}: {name} and {} got different spans",
            received[0].0
        );
        let missing: Vec<_> = fixture.predicted.difference(got).collect();
        let extra: Vec<_> = got.difference(&fixture.predicted).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: {name} differs from the prediction; missing {missing:?}, extra {extra:?}"
        );
    }
}

fn skip_without_venv() -> Option<PathBuf> {
    let v = venv();
    if v.is_none() {
        eprintln!(
            "!!! SKIPPING e2e_export_all: no Python venv with the test peers \
             (PODTRACE_VENV or {}/.venv; make deps) !!!",
            repo().display()
        );
    }
    v
}

#[test]
fn three_exporters_with_flags_get_the_predicted_sample() {
    let cases = rule::check_against_vectors();
    eprintln!("sampling rule agrees with {cases} shared vectors");
    let Some(venv) = skip_without_venv() else {
        return;
    };
    let fixture = Fixture::new();
    let receivers = Receivers::start(&venv);
    let out = fixture.dir.path().join("flags");
    let summary = analyze(
        analyze_cmd(&fixture.capture, &out)
            .args(["--tracing-sample-rate", &RATE.to_string()])
            .args(["--tracing-otlp-endpoint", &receivers.otlp.url()])
            .args(["--tracing-jaeger-endpoint", &receivers.jaeger.url()])
            .args(["--tracing-splunk-endpoint", &receivers.splunk.url()])
            .args(["--tracing-splunk-token", TOKEN]),
    );
    check_run(&fixture, &receivers, &summary, "flags");
    // The local output is the same sample.
    let local: BTreeSet<Key> = read_spans(&out)
        .into_iter()
        .map(|s| (s.trace_id, s.span_id))
        .collect();
    assert_eq!(local, fixture.predicted, "local spans.json at rate {RATE}");
}

#[test]
fn three_exporters_with_env_vars_get_the_predicted_sample() {
    rule::check_against_vectors();
    let Some(venv) = skip_without_venv() else {
        return;
    };
    let fixture = Fixture::new();

    // Everything from the environment.
    let receivers = Receivers::start(&venv);
    let summary = analyze(
        analyze_cmd(&fixture.capture, &fixture.dir.path().join("env"))
            .env("PODTRACE_TRACING_SAMPLE_RATE", RATE.to_string())
            .env("PODTRACE_TRACING_OTLP_ENDPOINT", receivers.otlp.url())
            .env("PODTRACE_TRACING_JAEGER_ENDPOINT", receivers.jaeger.url())
            .env("PODTRACE_TRACING_SPLUNK_ENDPOINT", receivers.splunk.url())
            .env("PODTRACE_TRACING_SPLUNK_TOKEN", TOKEN),
    );
    check_run(&fixture, &receivers, &summary, "env");
    drop(receivers);

    // A flag beats its variable: env rate 0.0 (nothing) + flag 0.5 → the same sample.
    let receivers = Receivers::start(&venv);
    let summary = analyze(
        analyze_cmd(&fixture.capture, &fixture.dir.path().join("env-and-flag"))
            .args(["--tracing-sample-rate", &RATE.to_string()])
            .env("PODTRACE_TRACING_SAMPLE_RATE", "0.0")
            .env("PODTRACE_TRACING_OTLP_ENDPOINT", receivers.otlp.url())
            .env("PODTRACE_TRACING_JAEGER_ENDPOINT", receivers.jaeger.url())
            .env("PODTRACE_TRACING_SPLUNK_ENDPOINT", receivers.splunk.url())
            .env("PODTRACE_TRACING_SPLUNK_TOKEN", TOKEN),
    );
    check_run(&fixture, &receivers, &summary, "env rate 0.0 + flag 0.5");
}
