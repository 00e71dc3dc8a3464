//! Driving a [`Pipeline`] over a whole input ([`crate::analyze_into`]): with more than one
//! rayon thread, the back (intake and identification, serial by nature) runs on a thread
//! of its own while the calling thread runs the front (reassembly, parsing: connections
//! in parallel) of the next batches and the tail (span building and enrichment in
//! parallel, graph, sampling) of the previous ones; the front runs a few steps ahead
//! through a bounded channel. At the end the back's thread also finishes: it links the
//! last link delay's worth of exchanges a run at a time while the calling thread builds
//! the runs already linked. The back takes exactly the steps, and the tail exactly the
//! handoffs, in exactly the order the one-thread run gives them, so the spans, their
//! batches, the graph and the stats are the same for any thread count.

use std::sync::mpsc::{
    channel, sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError,
};
use std::time::Duration;

use podtrace_format::Record;
use podtrace_model::Span;

use super::front::{Absorbed, Step};
use super::tail::{Handoff, Tail};
use super::{end_parts, Pipeline, StageTimes};
use crate::{Analysis, BATCH};

/// What the calling thread sends the back's thread.
enum ToBack {
    /// One step of the front.
    Step(Step),
    /// The front's last parse results: the back finishes ([`super::back::Back::finish`]).
    Finish(Vec<Absorbed>),
}

/// What the back's thread hands the tail, in order.
enum FromBack {
    /// The handoffs of one step: their spans go out batch by batch.
    Step(Vec<Handoff>),
    /// Handoffs of the back's finish: their spans go out together, in one sorted batch
    /// (as [`super::finish_parts`] hands them out on one thread).
    Finish(Vec<Handoff>),
}

/// Steps the front may run ahead of the back (two per batch of records): bounds the
/// memory between the threads to a few batches' parse results (8 batches of 8,192
/// records), while leaving the calling thread room to build spans when the back is busy.
const STEPS_AHEAD: usize = 16;

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

/// The front and the tail on the calling thread, the back on a scoped thread of its own.
fn run_split<E>(
    pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    mut hand_out: impl FnMut(Vec<Span>) -> Result<(), E>,
) -> Result<(Analysis, StageTimes), E> {
    let (mut front, back, mut tail) = pipeline.into_parts();
    std::thread::scope(|scope| {
        let (steps, step_rx) = sync_channel::<ToBack>(STEPS_AHEAD);
        // Unbounded: the back never waits for the tail (the front, bounded by `steps`,
        // keeps what is queued here to a few batches).
        let (handoff_tx, handoffs) = channel::<FromBack>();
        // Named, so that per-thread profiles (perf, top -H) show the serial stage apart.
        let spawned = std::thread::Builder::new()
            .name("podtrace-back".into())
            .spawn_scoped(scope, move || {
                let mut back = back;
                for msg in step_rx {
                    match msg {
                        ToBack::Step(step) => {
                            // A large drain's parts go as soon as each is linked.
                            let mut stopped = false;
                            back.step(step, &mut |h| {
                                stopped |= handoff_tx.send(FromBack::Step(h)).is_err();
                            });
                            if stopped {
                                break;
                            }
                        }
                        ToBack::Finish(last) => {
                            // Each run as soon as it is linked: the tail builds it while the
                            // next is identified.
                            back.finish(last, |h| {
                                let _ = handoff_tx.send(FromBack::Finish(h));
                            });
                        }
                    }
                }
                back
            });
        // As `scope.spawn` does (the OS refused a thread: nothing can run).
        let worker = spawned.unwrap_or_else(|e| panic!("failed to spawn the back's thread: {e}"));
        // The spans of the back's finish (none before the loop below ends).
        let mut last = Vec::new();
        let mut batch = Vec::with_capacity(BATCH);
        for r in records {
            batch.push(r);
            if batch.len() == BATCH {
                let step = front.push(&batch);
                batch.clear();
                let drain = front.drain();
                let mut sent = true;
                for msg in [ToBack::Step(step), ToBack::Step(drain)] {
                    sent =
                        sent && send(&steps, msg, &handoffs, &mut tail, &mut hand_out, &mut last)?;
                }
                if !sent {
                    // The back stopped (a panic, raised again by the join below).
                    break;
                }
                while let Ok(h) = handoffs.try_recv() {
                    take(&mut tail, h, &mut hand_out, &mut last)?;
                }
            }
        }
        // A failed send means the back stopped: the join below raises its panic.
        let _ = steps.send(ToBack::Step(front.push(&batch)));
        let _ = steps.send(ToBack::Finish(front.finish()));
        drop(steps);
        for h in handoffs.iter() {
            take(&mut tail, h, &mut hand_out, &mut last)?;
        }
        let back = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let (mut analysis, times) = end_parts(&front.stats, front.times, &back, &tail, last);
        hand_out(std::mem::take(&mut analysis.spans))?;
        Ok((analysis, times))
    })
}

/// How long the calling thread waits for the back's handoffs at a time while the back's
/// queue is full (then it tries to send again).
const FULL_WAIT: Duration = Duration::from_millis(1);

/// Sends `msg` to the back. While the back's queue is full, the tail takes what the back
/// hands out meanwhile (the parts of a large drain, built while the back links the next
/// ones) instead of the calling thread only waiting. `Ok(false)`: the back stopped.
fn send<E>(
    steps: &SyncSender<ToBack>,
    mut msg: ToBack,
    handoffs: &Receiver<FromBack>,
    tail: &mut Tail,
    hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    last: &mut Vec<Span>,
) -> Result<bool, E> {
    loop {
        match steps.try_send(msg) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Disconnected(_)) => return Ok(false),
            Err(TrySendError::Full(back)) => {
                msg = back;
                match handoffs.recv_timeout(FULL_WAIT) {
                    Ok(h) => take(tail, h, hand_out, last)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(false),
                }
            }
        }
    }
}

/// The tail takes the back's handoffs in order; the spans they make go to `hand_out`,
/// those of the back's finish to `last` (handed out together at the end).
fn take<E>(
    tail: &mut Tail,
    handoffs: FromBack,
    hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    last: &mut Vec<Span>,
) -> Result<(), E> {
    match handoffs {
        FromBack::Step(handoffs) => {
            for h in handoffs {
                if let Some(spans) = tail.take(h) {
                    hand_out(spans)?;
                }
            }
        }
        FromBack::Finish(handoffs) => {
            for h in handoffs {
                if let Some(mut spans) = tail.take(h) {
                    last.append(&mut spans);
                }
            }
        }
    }
    Ok(())
}
