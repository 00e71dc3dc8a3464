//! Driving a [`Pipeline`] over a whole input ([`crate::analyze_into`]): with more than one
//! rayon thread, the front (reassembly, parsing: connections in parallel) and the back
//! (linking, enrichment, graph) run at the same time on two threads, the front a few
//! steps ahead through a bounded channel. The back takes exactly the steps, in exactly
//! the order, that the one-thread run gives it, so the spans, their batches, the graph
//! and the stats are the same for any thread count.

use std::sync::mpsc::{channel, sync_channel};

use podtrace_format::Record;
use podtrace_model::Span;

use super::front::Step;
use super::{finish_back, Pipeline, StageTimes};
use crate::{Analysis, BATCH};

/// Steps the front may run ahead of the back (two per batch of records): bounds the
/// memory between the threads to a few batches' parse results.
const STEPS_AHEAD: usize = 4;

/// Runs `pipeline` over `records`, handing each non-empty batch of spans to `hand_out` in
/// order; the analysis (without spans) and the stage times. Stops at `hand_out`'s first
/// error.
pub(crate) fn run<E>(
    pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    hand_out: impl FnMut(Vec<Span>) -> Result<(), E>,
) -> Result<(Analysis, StageTimes), E> {
    if rayon::current_num_threads() > 1 {
        run_split(pipeline, records, hand_out)
    } else {
        run_serial(pipeline, records, hand_out)
    }
}

/// Everything on the calling thread (one core: a second thread would only take turns).
fn run_serial<E>(
    mut pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    mut hand_out: impl FnMut(Vec<Span>) -> Result<(), E>,
) -> Result<(Analysis, StageTimes), E> {
    let mut batch = Vec::with_capacity(BATCH);
    for r in records {
        batch.push(r);
        if batch.len() == BATCH {
            pipeline.push(&batch);
            batch.clear();
            hand_out(pipeline.drain_completed())?;
        }
    }
    pipeline.push(&batch);
    let (mut analysis, times) = pipeline.finish_timed();
    hand_out(std::mem::take(&mut analysis.spans))?;
    Ok((analysis, times))
}

/// The front on the calling thread, the back on a scoped thread of its own.
fn run_split<E>(
    pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    mut hand_out: impl FnMut(Vec<Span>) -> Result<(), E>,
) -> Result<(Analysis, StageTimes), E> {
    let (mut front, back) = pipeline.into_parts();
    std::thread::scope(|scope| {
        let (steps, step_rx) = sync_channel::<Step>(STEPS_AHEAD);
        // Unbounded: the back never waits for the sink (the front, bounded by `steps`,
        // keeps what is queued here to a few batches).
        let (span_tx, spans) = channel::<Vec<Span>>();
        let worker = scope.spawn(move || {
            let mut back = back;
            for step in step_rx {
                if let Some(out) = back.step(step) {
                    if span_tx.send(out).is_err() {
                        break;
                    }
                }
            }
            back
        });
        let mut batch = Vec::with_capacity(BATCH);
        for r in records {
            batch.push(r);
            if batch.len() == BATCH {
                let step = front.push(&batch);
                batch.clear();
                if steps.send(step).is_err() || steps.send(front.drain()).is_err() {
                    // The back stopped (a panic, raised again by the join below).
                    break;
                }
                while let Ok(out) = spans.try_recv() {
                    hand_out(out)?;
                }
            }
        }
        // A failed send means the back stopped: the join below raises its panic.
        let _ = steps.send(front.push(&batch));
        let last = front.finish();
        drop(steps);
        for out in spans.iter() {
            hand_out(out)?;
        }
        let back = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let (mut analysis, times) = finish_back(&front, back, last);
        hand_out(std::mem::take(&mut analysis.spans))?;
        Ok((analysis, times))
    })
}
