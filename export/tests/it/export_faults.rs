//! Faults: busy receivers (retried, nothing lost), `Retry-After`, a hanging receiver
//! (timeout, the others complete), a refused connection, and HEC token problems (named
//! as such, the token never printed).

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use podtrace_export::{
    build_exporters, export_all, otlp_exporter, splunk_exporter, DeliveryConfig, ExportConfig,
    ExportError, Exporter, SplunkConfig, Url,
};

#[tokio::test]
async fn busy_twice_then_ok_is_retried_and_nothing_is_lost() {
    let Some(venv) = venv() else { return };
    let busy = ["--fail", "2", "--fail-status", "503"];
    let otlp = Receiver::start(&venv, "otlp_sink.py", &busy);
    let jaeger = Receiver::start(&venv, "jaeger_collector.py", &busy);
    let hec = Receiver::start(&venv, "hec.py", &["--token", "tok", "--busy", "2"]);
    let spans = sample_spans(100);
    let config = ExportConfig {
        otlp: Some(otlp.url("http")),
        jaeger: Some(jaeger.url("http")),
        splunk: Some(SplunkConfig::new(hec.url("http"), "tok")),
        delivery: DeliveryConfig {
            batch_size: 100,
            ..test_config().delivery
        },
    };
    let exporters = build_exporters(&config).unwrap();
    let reports = export_all(&exporters, &spans).await;
    for r in &reports {
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.accounting.spans_sent, 100, "{r}");
        assert_eq!(r.accounting.retried_requests, 2, "{r}");
        assert_eq!(r.accounting.failed_requests, 0, "{r}");
    }
    assert_eq!(otlp.wait_records(100, Duration::from_secs(5)).len(), 100);
    assert_eq!(jaeger.wait_records(100, Duration::from_secs(5)).len(), 100);
    assert_eq!(hec.wait_records(100, Duration::from_secs(5)).len(), 100);
    assert_eq!(otlp.requests(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured_and_retries_are_bounded() {
    let Some(venv) = venv() else { return };
    let sink = Receiver::start(
        &venv,
        "otlp_sink.py",
        &["--fail", "1", "--fail-status", "429", "--retry-after", "1"],
    );
    let exporter = otlp_exporter(&sink.url("http"), &test_config().delivery).unwrap();
    let started = Instant::now();
    exporter.export(&sample_spans(10)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(exporter.accounting().retried_requests, 1);

    let always_busy = Receiver::start(&venv, "otlp_sink.py", &["--fail", "1000"]);
    let mut delivery = test_config().delivery;
    delivery.max_retries = 2;
    let exporter = otlp_exporter(&always_busy.url("http"), &delivery).unwrap();
    let err = exporter.export(&sample_spans(120)).await.unwrap_err();
    assert!(
        matches!(err, ExportError::RetriesExhausted { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("503"), "{err}");
    // 120 spans in batches of 50, one request at a time: each of the three batches gets
    // its 3 attempts, then the endpoint counts as down (GIVE_UP_AFTER_EXHAUSTED_WINDOWS).
    let acc = exporter.accounting();
    assert_eq!(
        (acc.requests, acc.retried_requests, acc.failed_requests),
        (9, 6, 3)
    );
    assert_eq!(acc.dropped_spans, 120, "every batch failed");
    assert_eq!(always_busy.requests(), 9);

    // Busy for good after the first batch's attempts: a flaky endpoint is not given up on
    // after one exhausted batch — 250 spans = 5 batches, 3 windows exhausted in a row, the
    // last 2 batches skipped and counted as dropped.
    let busy = Receiver::start(&venv, "otlp_sink.py", &["--fail", "1000"]);
    let exporter = otlp_exporter(&busy.url("http"), &delivery).unwrap();
    let err = exporter.export(&sample_spans(250)).await.unwrap_err();
    assert!(matches!(err, ExportError::RetriesExhausted { .. }), "{err}");
    let acc = exporter.accounting();
    assert_eq!(
        (acc.requests, acc.failed_requests, acc.dropped_spans),
        (9, 3, 250)
    );
    assert_eq!(busy.requests(), 9, "batches 4 and 5 were skipped");

    // Flaky: the first batch's three attempts fail, then the receiver recovers. The later
    // batches are still sent; only the first batch is lost, and that is reported.
    let flaky = Receiver::start(&venv, "otlp_sink.py", &["--fail", "3"]);
    let exporter = otlp_exporter(&flaky.url("http"), &delivery).unwrap();
    let err = exporter.export(&sample_spans(120)).await.unwrap_err();
    assert!(matches!(err, ExportError::RetriesExhausted { .. }), "{err}");
    let acc = exporter.accounting();
    assert_eq!((acc.spans_sent, acc.dropped_spans), (70, 50));
    assert_eq!(
        flaky.requests(),
        5,
        "3 failed attempts, then batches 2 and 3"
    );
}

#[tokio::test]
async fn a_hanging_receiver_times_out_while_the_others_complete() {
    let Some(venv) = venv() else { return };
    let otlp = Receiver::start(&venv, "otlp_sink.py", &[]);
    let jaeger = Receiver::start(&venv, "jaeger_collector.py", &["--hang"]);
    let hec = Receiver::start(&venv, "hec.py", &["--token", "tok"]);
    let spans = sample_spans(200);
    let config = ExportConfig {
        otlp: Some(otlp.url("http")),
        jaeger: Some(jaeger.url("http")),
        splunk: Some(SplunkConfig::new(hec.url("http"), "tok")),
        delivery: DeliveryConfig {
            timeout: Duration::from_secs(3),
            ..test_config().delivery
        },
    };
    let exporters = build_exporters(&config).unwrap();
    let started = Instant::now();
    let reports = export_all(&exporters, &spans).await;
    let total = started.elapsed();
    let (o, j, s) = (&reports[0], &reports[1], &reports[2]);
    eprintln!("{o}\n{j}\n{s}");
    assert!(o.is_ok(), "{o}");
    assert!(s.is_ok(), "{s}");
    let err = j.error.as_deref().unwrap_or_default();
    assert!(err.contains("did not answer within 3s"), "{j}");
    assert_eq!(j.accounting.spans_sent, 0);
    assert_eq!(j.accounting.dropped_spans, 200, "{j}");
    assert_eq!(j.accounting.retried_requests, 0, "a timeout is not retried");
    // The others were not held up by the hanging one.
    assert!(o.elapsed_ms < 2000 && s.elapsed_ms < 2000, "{o} / {s}");
    assert!(j.elapsed_ms >= 3000, "{j}");
    assert!(total < Duration::from_secs(6), "{total:?}");
    assert_eq!(otlp.wait_records(200, Duration::from_secs(5)).len(), 200);
    assert_eq!(hec.wait_records(200, Duration::from_secs(5)).len(), 200);
}

#[tokio::test]
async fn connection_refused_is_a_clear_error_and_the_others_complete() {
    let Some(venv) = venv() else { return };
    let jaeger = Receiver::start(&venv, "jaeger_collector.py", &[]);
    let nobody = free_port();
    let config = ExportConfig {
        otlp: Some(Url::parse(&format!("http://127.0.0.1:{nobody}")).unwrap()),
        jaeger: Some(jaeger.url("http")),
        delivery: DeliveryConfig {
            max_retries: 2,
            ..test_config().delivery
        },
        ..test_config()
    };
    let exporters = build_exporters(&config).unwrap();
    let spans = sample_spans(75);
    let reports = export_all(&exporters, &spans).await;
    let o = &reports[0];
    eprintln!("{o}");
    let err = o.error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "cannot connect to http://127.0.0.1:{nobody}/v1/traces"
        )),
        "{o}"
    );
    assert!(
        err.contains("after 3 attempt(s)") && err.to_lowercase().contains("refused"),
        "{o}"
    );
    assert_eq!(o.accounting.retried_requests, 2, "{o}");
    assert_eq!(o.accounting.dropped_spans, 75, "{o}");
    assert!(reports[1].is_ok(), "{}", reports[1]);
    assert_eq!(jaeger.wait_records(75, Duration::from_secs(5)).len(), 75);
}

/// Collects everything `tracing` emits (all levels) while the guard lives.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn hec_token_problems_are_named_and_the_token_never_leaks() {
    let Some(venv) = venv() else { return };
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const GOOD: &str = "aaaaaaaa-good-4bbb-8ccc-dddddddddddd";
    const WRONG: &str = "zzzzzzzz-wrong-4yyy-8xxx-wwwwwwwwwwww";
    let hec = Receiver::start(&venv, "hec.py", &["--token", GOOD]);
    let spans = sample_spans(30);
    let mut printed = String::new();

    // 403, HEC code 4: an unknown token.
    let config = SplunkConfig::new(hec.url("http"), WRONG);
    let exporter = splunk_exporter(&config, &test_config().delivery).unwrap();
    let err = exporter.export(&spans).await.unwrap_err();
    assert!(
        matches!(err, ExportError::Auth { status: 403, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("token is invalid") && text.contains("HEC code 4"),
        "{text}"
    );
    assert_eq!(
        exporter.accounting().retried_requests,
        0,
        "a token problem is not retried"
    );
    printed += &format!("{err} {err:?} {exporter:?} {config:?}");

    // 401, HEC code 2 (what Splunk answers when no token reached it) — not "busy".
    let strict = Receiver::start(
        &venv,
        "hec.py",
        &[
            "--token",
            GOOD,
            "--fail",
            "1",
            "--fail-status",
            "401",
            "--fail-body",
            r#"{"text":"Token is required","code":2}"#,
        ],
    );
    let config = SplunkConfig::new(strict.url("http"), GOOD);
    let exporter = splunk_exporter(&config, &test_config().delivery).unwrap();
    let err = exporter.export(&spans).await.unwrap_err();
    assert!(
        matches!(err, ExportError::Auth { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("token is missing"), "{err}");
    assert!(!err.to_string().contains("busy"), "{err}");
    printed += &format!("{err} {err:?} {exporter:?} {config:?}");

    // Through export_all: report text and JSON.
    let exporters: Vec<Box<dyn Exporter>> = vec![Box::new(
        splunk_exporter(
            &SplunkConfig::new(hec.url("http"), WRONG),
            &test_config().delivery,
        )
        .unwrap(),
    )];
    let reports = export_all(&exporters, &spans).await;
    assert!(reports[0]
        .error
        .as_deref()
        .unwrap()
        .contains("Splunk HEC token problem"));
    printed += &format!(
        "{} {}",
        reports[0],
        serde_json::to_string(&reports[0]).unwrap()
    );

    let logged = logs.text();
    assert!(
        logged.contains("export request failed"),
        "logs were captured: {logged}"
    );
    for secret in [GOOD, WRONG] {
        assert!(
            !printed.contains(secret),
            "token in errors/Debug: {printed}"
        );
        assert!(!logged.contains(secret), "token in logs: {logged}");
    }
    // The receivers' own records never hold it either.
    let received = std::fs::read_to_string(&hec.out).unwrap_or_default();
    assert!(!received.contains(GOOD) && !received.contains(WRONG));
}
