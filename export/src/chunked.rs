//! A batch of spans encoded in chunks on the rayon pool and written in order: the local
//! files' text does not depend on how a batch is cut (each chunk's bytes depend only on
//! its spans and on whether it opens the document), so the bytes are the same as one
//! encoder's, on any number of threads.

use std::io::Write;

use podtrace_model::Span;
use rayon::prelude::*;

/// Chunks encoded at once: bounds the text held to this many chunks' (the buffers are
/// reused batch after batch, so they are not faulted in again).
const CHUNKS_AT_ONCE: usize = 8;

/// Bytes a span's text is guessed to take before any chunk was encoded (the local files'
/// spans take 1 to 1.1 KB each: a little more); the guess then follows the encoded chunks.
const FIRST_SPAN_BYTES: usize = 1280;

/// Chunk buffers reused across batches.
#[derive(Debug, Default)]
pub(crate) struct ChunkBuffers {
    bufs: Vec<Vec<u8>>,
    /// The most bytes per span of an encoded chunk (0: none encoded yet).
    span_bytes: usize,
}

impl ChunkBuffers {
    /// Encodes `spans` in chunks of `chunk_spans` with `encode(buffer, opens, chunk)`
    /// (`opens`: the chunk is the first of the batch and `opening` is set, i.e. the first
    /// of the document) and writes them to `out` in order.
    pub(crate) fn write(
        &mut self,
        out: &mut impl Write,
        spans: &[Span],
        chunk_spans: usize,
        opening: bool,
        encode: impl Fn(&mut Vec<u8>, bool, &[Span]) + Sync,
    ) -> std::io::Result<()> {
        let chunks: Vec<&[Span]> = spans.chunks(chunk_spans.max(1)).collect();
        let mut first = opening;
        for group in chunks.chunks(CHUNKS_AT_ONCE) {
            if self.bufs.len() < group.len() {
                self.bufs.resize_with(group.len(), Vec::new);
            }
            let span_bytes = self.expected_span_bytes();
            let bufs = &mut self.bufs[..group.len()];
            bufs.par_iter_mut()
                .zip(group.par_iter())
                .enumerate()
                .for_each(|(i, (buf, chunk))| {
                    buf.clear();
                    buf.reserve(chunk.len() * span_bytes);
                    encode(buf, first && i == 0, chunk);
                });
            first = false;
            for (buf, chunk) in bufs.iter().zip(group) {
                out.write_all(buf)?;
                self.span_bytes = self.span_bytes.max(buf.len().div_ceil(chunk.len()));
            }
        }
        Ok(())
    }

    /// Bytes to reserve per span of a chunk: the most a chunk took so far (a little more,
    /// so that a chunk slightly larger does not copy itself to grow), else a guess. Buffers
    /// are pre-sized instead of doubling from empty, which copied their text each time.
    fn expected_span_bytes(&self) -> usize {
        match self.span_bytes {
            0 => FIRST_SPAN_BYTES,
            n => n + n / 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{Resource, SpanId, SpanKind, Status, TraceId};

    fn span(i: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId(i.to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: format!("GET /{i}"),
            kind: SpanKind::Server,
            start_time_unix_nano: i,
            end_time_unix_nano: i + 1,
            attributes: Vec::new(),
            status: Status::unset(),
            resource: Resource::new("svc"),
        }
    }

    /// Chunks of any size, on one thread or several, give the one-pass text.
    #[test]
    fn chunked_text_is_the_one_pass_text() {
        let spans: Vec<Span> = (0..5000).map(span).collect();
        let encode = |buf: &mut Vec<u8>, opens: bool, chunk: &[Span]| {
            for (j, s) in chunk.iter().enumerate() {
                buf.extend_from_slice(if opens && j == 0 { b"[" } else { b"," });
                buf.extend_from_slice(s.name.as_bytes());
            }
        };
        let mut whole = Vec::new();
        encode(&mut whole, true, &spans);
        for chunk_spans in [1, 7, 1024, 5000, 9000] {
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let mut out = Vec::new();
                pool.install(|| {
                    ChunkBuffers::default()
                        .write(&mut out, &spans, chunk_spans, true, encode)
                        .expect("write")
                });
                assert!(out == whole, "chunks of {chunk_spans} on {threads} threads");
            }
        }
    }
}
