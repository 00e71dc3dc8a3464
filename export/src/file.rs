//! Local outputs: the OTLP/JSON request written to a file.
//!
//! `podtrace analyze` writes [`DEFAULT_OTLP_JSON_FILE`] when no endpoint is configured; any
//! OTLP/JSON reader (the collector's `otlpjsonfile` receiver, `otel-cli`, a test) can load
//! it. The file is written to a temporary sibling and renamed into place, so a reader never
//! sees half a file.
//!
//! For live mode, [`OtlpJsonLinesExporter`] is an [`Exporter`] that appends one request per
//! `export` call as a JSON line (the layout of the OpenTelemetry Collector's file exporter).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use podtrace_model::Span;

use crate::{otlp, Accounting, BoxFuture, ExportError, Exporter};

/// The analyzer's default output name.
pub const DEFAULT_OTLP_JSON_FILE: &str = "traces.otlp.json";

/// File name of podtrace's own span dump in an analysis's output directory
/// ([`crate::SpansJsonWriter`]).
pub const SPANS_JSON_FILE: &str = "spans.json";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the OTLP/JSON `ExportTraceServiceRequest` of `spans` to `path` (one line).
pub fn write_otlp_json(path: impl AsRef<Path>, spans: &[Span]) -> Result<(), ExportError> {
    let mut writer = OtlpJsonWriter::create(path)?;
    writer.write(spans)?;
    writer.finish().map(|_| ())
}

/// Buffer of a staged file's small writes. The encoders hand over chunks of about 1 MB:
/// larger than this, they go to the file directly instead of being copied into the buffer
/// first (`BufWriter` writes what does not fit its buffer straight through, in order).
const WRITE_BUFFER: usize = 64 << 10;

/// A file written under a temporary sibling name and renamed into place by
/// [`StagedFile::commit`], so a reader never sees half a file; dropped without `commit`
/// (the work failed), the temporary is removed.
#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    committed: bool,
}

impl StagedFile {
    /// Creates the temporary sibling of `path`.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = temp_sibling(&path);
        let file = File::create(&tmp)?;
        Ok(StagedFile {
            path,
            tmp,
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            committed: false,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where to write (buffered).
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes, syncs and renames the file into place; returns its path.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(self.path.clone())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Spans encoded at a time by [`OtlpJsonWriter::write`] (~1 MB of text).
const CHUNK_SPANS: usize = 1024;

/// Writes one OTLP/JSON `ExportTraceServiceRequest` batch by batch, so a large analysis
/// never holds all its spans: `{"resourceSpans":[` … one `ResourceSpans` per workload and
/// batch … `]}`. A workload can appear in several `ResourceSpans` (one per batch it has
/// spans in), which OTLP allows and every reader merges.
///
/// The document is a [`StagedFile`]: renamed into place by [`Self::finish`], removed when
/// dropped without it.
#[derive(Debug)]
pub struct OtlpJsonWriter {
    file: StagedFile,
    first: bool,
    spans: u64,
    bufs: crate::chunked::ChunkBuffers,
}

impl OtlpJsonWriter {
    /// Starts the document (the temporary file) for `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ExportError> {
        let path = path.as_ref();
        let mut file = StagedFile::create(path).map_err(io_error(path))?;
        file.writer()
            .write_all(b"{\"resourceSpans\":[")
            .map_err(io_error(path))?;
        Ok(OtlpJsonWriter {
            file,
            first: true,
            spans: 0,
            bufs: Default::default(),
        })
    }

    /// Appends the spans of one batch.
    pub fn write(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        // In chunks: the text of a whole batch (the last one of an analysis can hold
        // seconds of traffic) would be one large buffer grown and faulted in page by page.
        // Chunks are encoded in parallel; only the document's first one has no leading
        // comma.
        let opening = self.first;
        let written = self.bufs.write(
            self.file.writer(),
            spans,
            CHUNK_SPANS,
            opening,
            |buf, opens, chunk| {
                let mut first = opens;
                crate::otlp_json::write_resource_spans(buf, chunk, &mut first);
            },
        );
        written.map_err(io_error(self.file.path()))?;
        if !spans.is_empty() {
            self.first = false;
        }
        self.spans += spans.len() as u64;
        Ok(())
    }

    /// Ends the document, syncs it and renames it into place; returns the spans written.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        let path = self.file.path().to_path_buf();
        let done = self.file.writer().write_all(b"]}\n");
        done.and_then(|()| self.file.commit())
            .map_err(io_error(&path))?;
        Ok(self.spans)
    }

    /// The file the document ends up in.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Reads a file written by [`write_otlp_json`].
pub fn read_otlp_json(
    path: impl AsRef<Path>,
) -> Result<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest, ExportError>
{
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    otlp::from_json(&text)
}

/// Appends each exported batch as one OTLP/JSON `ExportTraceServiceRequest` line.
///
/// Writes are synchronous (local file, small batches); `flush` syncs the file to disk.
#[derive(Debug)]
pub struct OtlpJsonLinesExporter {
    path: PathBuf,
    shown: String,
    state: Mutex<LinesState>,
}

#[derive(Debug)]
struct LinesState {
    file: File,
    accounting: Accounting,
}

impl OtlpJsonLinesExporter {
    /// Opens (creates or appends to) `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ExportError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(OtlpJsonLinesExporter {
            shown: format!("file://{}", path.display()),
            path,
            state: Mutex::new(LinesState {
                file,
                accounting: Accounting::default(),
            }),
        })
    }

    fn append(&self, spans: &[Span]) -> Result<(), ExportError> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut line = crate::otlp_json::request(spans);
        line.push(b'\n');
        let mut state = self
            .state
            .lock()
            .map_err(|_| ExportError::Encode("file exporter lock poisoned".into()))?;
        state.accounting.requests += 1;
        match state.file.write_all(&line) {
            Ok(()) => {
                state.accounting.spans_sent += spans.len() as u64;
                Ok(())
            }
            Err(e) => {
                state.accounting.failed_requests += 1;
                state.accounting.dropped_spans += spans.len() as u64;
                Err(io_error(&self.path)(e))
            }
        }
    }

    fn sync(&self) -> Result<(), ExportError> {
        let state = self
            .state
            .lock()
            .map_err(|_| ExportError::Encode("file exporter lock poisoned".into()))?;
        state.file.sync_data().map_err(io_error(&self.path))
    }
}

impl Exporter for OtlpJsonLinesExporter {
    fn name(&self) -> &str {
        "file"
    }

    fn endpoint(&self) -> String {
        self.shown.clone()
    }

    fn export<'a>(&'a self, spans: &'a [Span]) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { self.append(spans) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move { self.sync() })
    }

    fn accounting(&self) -> Accounting {
        self.state.lock().map(|s| s.accounting).unwrap_or_default()
    }
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| DEFAULT_OTLP_JSON_FILE.into());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Appends `span` as `spans.json` holds it: exactly the bytes of
/// `serde_json::to_writer(out, span)` (compact, fields in declaration order, defaults
/// skipped as the model's serde attributes say), written directly: JSON escaping runs of
/// 8 bytes at a time and ids and integers without the formatter, where serde escapes byte
/// by byte (it was most of `spans.json`'s cost).
pub fn write_span_json(out: &mut Vec<u8>, span: &Span) {
    use crate::otlp_json::{write_str, write_u64};
    use podtrace_model::{AttrValue, SpanKind, StatusCode};
    out.extend_from_slice(b"{\"trace_id\":\"");
    span.trace_id.push_hex(out);
    out.extend_from_slice(b"\",\"span_id\":\"");
    span.span_id.push_hex(out);
    out.push(b'"');
    if let Some(p) = span.parent_span_id {
        out.extend_from_slice(b",\"parent_span_id\":\"");
        p.push_hex(out);
        out.push(b'"');
    }
    if !span.trace_state.is_empty() {
        out.extend_from_slice(b",\"trace_state\":");
        write_str(out, &span.trace_state);
    }
    out.extend_from_slice(b",\"flags\":");
    write_u64(out, u64::from(span.flags));
    out.extend_from_slice(b",\"name\":");
    write_str(out, &span.name);
    out.extend_from_slice(match span.kind {
        SpanKind::Server => b",\"kind\":\"server\",\"start_time_unix_nano\":",
        SpanKind::Client => b",\"kind\":\"client\",\"start_time_unix_nano\":",
    });
    write_u64(out, span.start_time_unix_nano);
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    write_u64(out, span.end_time_unix_nano);
    out.extend_from_slice(b",\"attributes\":[");
    for (i, kv) in span.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_str(out, &kv.key);
        out.extend_from_slice(b",\"value\":");
        match &kv.value {
            AttrValue::Str(v) => write_str(out, v),
            AttrValue::Bool(true) => out.extend_from_slice(b"true"),
            AttrValue::Bool(false) => out.extend_from_slice(b"false"),
            AttrValue::Int(v) => {
                if *v < 0 {
                    out.push(b'-');
                }
                write_u64(out, v.unsigned_abs());
            }
            // serde_json's own float text (shortest round trip; null for NaN/infinite).
            AttrValue::Double(v) => {
                if serde_json::to_writer(&mut *out, v).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(match span.status.code {
        StatusCode::Unset => b"],\"status\":{\"code\":\"unset\"",
        StatusCode::Ok => b"],\"status\":{\"code\":\"ok\"",
        StatusCode::Error => b"],\"status\":{\"code\":\"error\"",
    });
    if !span.status.message.is_empty() {
        out.extend_from_slice(b",\"message\":");
        write_str(out, &span.status.message);
    }
    out.extend_from_slice(b"},\"resource\":{\"service_name\":");
    write_str(out, &span.resource.service_name);
    out.extend_from_slice(b",\"attributes\":[");
    for (i, (k, v)) in span.resource.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_str(out, k);
        out.push(b',');
        write_str(out, v);
        out.push(b']');
    }
    out.extend_from_slice(b"]}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{Resource, SpanId, SpanKind, Status, TraceId};

    /// A server span of service `web` with span id `id` (hex).
    fn span(id: &str) -> Span {
        Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex(id).unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![],
            status: Status::unset(),
            resource: Resource::new("web"),
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_OTLP_JSON_FILE);
        let span = span("00f067aa0ba902b7");
        write_otlp_json(&path, std::slice::from_ref(&span)).unwrap();
        let back = read_otlp_json(&path).unwrap();
        assert_eq!(back, otlp::encode(&[span]));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        let err = write_otlp_json(dir.path().join("missing/x.json"), &[]).unwrap_err();
        assert!(err.to_string().contains("missing/x.json"), "{err}");
    }

    #[test]
    fn streamed_document_is_one_request_with_every_span() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_OTLP_JSON_FILE);
        let mut other = span("00f067aa0ba902b9");
        other.resource = Resource::new("db");
        let batches = [
            vec![span("00f067aa0ba902b7"), other.clone()],
            vec![],
            vec![span("00f067aa0ba902b8")],
        ];
        let mut w = OtlpJsonWriter::create(&path).unwrap();
        assert!(!path.exists(), "only the temporary exists while writing");
        for b in &batches {
            w.write(b).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 3);
        let back = read_otlp_json(&path).unwrap();
        let mut expected = otlp::encode(&batches[0]);
        expected
            .resource_spans
            .extend(otlp::encode(&batches[2]).resource_spans);
        assert_eq!(back, expected);
        write_otlp_json(&path, &batches[0]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(read_otlp_json(&path).unwrap(), otlp::encode(&batches[0]));
        // Dropped unfinished: nothing left behind, the earlier file untouched.
        let w = OtlpJsonWriter::create(&path).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Empty: a valid, empty request.
        write_otlp_json(&path, &[]).unwrap();
        assert_eq!(read_otlp_json(&path).unwrap().resource_spans.len(), 0);
    }

    #[tokio::test]
    async fn json_lines_exporter_appends_one_request_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.otlp.jsonl");
        let batches = [
            vec![span("00f067aa0ba902b7")],
            vec![span("00f067aa0ba902b8"), span("00f067aa0ba902b9")],
        ];
        let exporter = OtlpJsonLinesExporter::open(&path).unwrap();
        for b in &batches {
            exporter.export(b).await.unwrap();
        }
        exporter.export(&[]).await.unwrap();
        exporter.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, batch) in lines.iter().zip(&batches) {
            assert_eq!(otlp::from_json(line).unwrap(), otlp::encode(batch));
        }
        let acc = exporter.accounting();
        assert_eq!((acc.spans_sent, acc.requests), (3, 2));
        assert_eq!(exporter.name(), "file");
    }
    #[test]
    fn span_json_is_serde_json_byte_for_byte() {
        use podtrace_model::{AttrValue, KeyValue, SpanKind, Status, StatusCode};
        let mut spans = vec![span("00f067aa0ba902b7")];
        let mut b = span("00f067aa0ba902b8");
        b.parent_span_id = Some(b.span_id);
        b.trace_state = "vendor=x,y=\"z\"\n".into();
        b.flags = 0;
        b.kind = SpanKind::Client;
        b.name = "GET /a\"b\\c\t\u{1}é\u{7f} long enough to cross words".into();
        b.status = Status::error("HTTP 500 \"bad\"");
        b.attributes = vec![
            KeyValue::new("http.response.status_code", 200i64),
            KeyValue::new("neg", i64::MIN),
            KeyValue::new("max", i64::MAX),
            KeyValue::new("zero", 0i64),
            KeyValue::new("yes", true),
            KeyValue::new("no", false),
            KeyValue::new("ratio", 0.25f64),
            KeyValue::new("whole", 1.0f64),
            KeyValue::new("tiny", 1e-300f64),
            KeyValue::new("huge", -1.5e300f64),
            KeyValue::new("nan", f64::NAN),
            KeyValue::new("inf", f64::INFINITY),
            KeyValue::new("k\"ey\u{0}", AttrValue::Str("v\r\u{8}\u{c}".into())),
            KeyValue::new("empty", ""),
        ];
        b.resource = Resource::new("db \"primary\"")
            .with("k8s.pod.name", "db-0")
            .with("k8s.pod.label.a\\b", "x\ny");
        spans.push(b);
        let mut c = span("00f067aa0ba902b9");
        c.status = Status {
            code: StatusCode::Ok,
            message: String::new(),
        };
        c.attributes.clear();
        spans.push(c);
        let mut d = span("00f067aa0ba902ba");
        d.status = Status {
            code: StatusCode::Unset,
            message: "note".into(),
        };
        spans.push(d);
        for s in &spans {
            let mut out = Vec::new();
            write_span_json(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}
