//! The capture writer's CPU priority: the idle class while it keeps up, normal while it
//! falls behind.
//!
//! The Parquet encoding of a capture (Arrow columns, dictionaries, zstd) runs in bursts of
//! about a millisecond on the thread of [`record_to_file`](crate::file::record_to_file).
//! At normal priority a burst delays whatever the traced node runs on that CPU: at a fixed
//! 10 k req/s against nginx the recorder added ~23 % to the p99 latency, and with the whole
//! recorder in the idle class ~11 % (bench/results.md, "Recorder: session 10"). The idle
//! class alone would starve the writer on a saturated node, the channel from the ring
//! consumer would fill and the ring would drop events. So the writer's thread runs as
//! `SCHED_IDLE` while it keeps up, and the ring consumer — at normal priority, the one
//! that sees the backlog grow even when the writer gets no CPU at all — raises it back to
//! `SCHED_OTHER` as soon as the channel between them is half full; the writer returns to
//! the idle class when it finds the channel empty again. The consumer also raises a
//! writer that has handled no session event for [`STALL_LIMIT`] (a node whose CPUs are all
//! taken gives the idle class almost nothing), so that row groups are still flushed about
//! every second.
//!
//! The ring consumer has an idle class of its own, kept by a guard thread at normal priority
//! that also raises a stalled writer ([`crate::consumer_priority`]).
//!
//! A kernel or container that refuses the policy change (`sched_setscheduler` fails) leaves
//! the writer at normal priority, as before: nothing else depends on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Threads that share one CPU class: `SCHED_IDLE` while their work keeps up, `SCHED_OTHER`
/// once raised. The capture writer (one thread) and the ring consumer (the runtime workers
/// it runs on, [`crate::consumer_priority`]) each have one; what differs is who raises and
/// lowers them, and when.
#[derive(Debug, Default)]
pub(crate) struct ThreadClass {
    /// The member threads.
    tids: Mutex<Vec<i32>>,
    /// Whether the members are in the idle class now (and a joining thread goes there).
    idle: AtomicBool,
    /// The policy change failed once: normal priority for good.
    refused: AtomicBool,
    /// The class ended ([`ThreadClass::end`]): normal priority, no new member.
    ended: AtomicBool,
    /// Times the class was raised to normal priority.
    raised: AtomicU64,
    /// When it was last raised ([`now_ms`]).
    raised_at_ms: AtomicU64,
}

impl ThreadClass {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        self.tids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The calling thread joins the class, in the class's current state (no-op for a
    /// member, or after the end).
    pub(crate) fn join_current(&self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let mut tids = self.lock();
        if tids.contains(&tid) || self.ended.load(Ordering::Relaxed) {
            return;
        }
        tids.push(tid);
        if self.idle.load(Ordering::Relaxed) && !set_policy(tid, libc::SCHED_IDLE) {
            drop(tids);
            self.refuse();
        }
    }

    /// Puts the members in the idle class (`true`) or back to normal. A thread that has
    /// exited is forgotten; never idle once refused or ended.
    pub(crate) fn set(&self, idle: bool) {
        let mut tids = self.lock();
        if idle && (self.refused.load(Ordering::Relaxed) || self.ended.load(Ordering::Relaxed)) {
            return;
        }
        self.idle.store(idle, Ordering::Relaxed);
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let mut failed = false;
        tids.retain(|&tid| {
            set_policy(tid, policy) || {
                let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                failed |= !gone;
                !gone
            }
        });
        drop(tids);
        if failed && idle {
            self.refuse();
        }
    }

    /// Back to normal priority if idle, counted; false if it was normal already.
    pub(crate) fn raise(&self) -> bool {
        if !self.idle.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.set(false);
        self.raised_at_ms.store(now_ms(), Ordering::Relaxed);
        self.raised.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether the members are in the idle class now.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Whether the idle class was refused.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether [`ThreadClass::end`] ran.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Times the class was raised.
    pub(crate) fn raised(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }

    /// When the class was last raised ([`now_ms`]).
    pub(crate) fn raised_at_ms(&self) -> u64 {
        self.raised_at_ms.load(Ordering::Relaxed)
    }

    /// Every member back to normal priority, for good.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        self.set(false);
    }

    /// Gives up on the idle class: the members stay at (or return to) normal priority.
    fn refuse(&self) {
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                "recorder threads stay at normal CPU priority: sched_setscheduler refused"
            );
        }
        self.set(false);
    }
}

/// Shared between the writer's thread and the ring consumer of one recording.
#[derive(Debug, Default)]
pub struct WriterPriority {
    /// The writer's thread.
    class: ThreadClass,
    /// When the writer last handled a session event ([`now_ms`]).
    last_step_ms: AtomicU64,
}

/// How long an idle-class writer may go without handling a session event (it gets one
/// every 250 ms, a progress tick, whenever it runs) before the consumer raises it: the
/// bound on how late a row group's flush can be on a node whose CPUs are all taken.
pub const STALL_LIMIT: Duration = Duration::from_millis(500);

/// How long a raised writer stays at normal priority at least, caught up or not: a writer
/// that went back to the idle class as soon as it had caught up, on a node whose CPUs are
/// all taken, was raised again and again (21 times in 8 s) and each time got the CPU only
/// after the channel had filled, until the consumer blocked and the ring dropped events.
pub const CALM: Duration = Duration::from_secs(1);

/// Milliseconds on a monotonic clock (since the first call).
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// `sched_setscheduler(tid, policy)` with priority 0; false if the kernel refused.
fn set_policy(tid: i32, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call; a thread id
    // that no longer exists makes the call fail with ESRCH, nothing else.
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

/// The calling thread back at normal priority (a thread inherits its creator's class).
pub(crate) fn normal_priority_here() {
    // SAFETY: gettid has no preconditions.
    set_policy(unsafe { libc::gettid() }, libc::SCHED_OTHER);
}

impl WriterPriority {
    /// Called on the writer's thread: remembers it and puts it in the idle class.
    pub fn lower(&self) {
        self.last_step_ms.store(now_ms(), Ordering::Relaxed);
        self.class.join_current();
        self.class.set(true);
    }

    /// Called by the writer after each session event it handled: notes the time (the
    /// consumer's stall check), and back to the idle class if it found nothing left to
    /// write and the consumer had raised it.
    pub fn step(&self, caught_up: bool) {
        self.last_step_ms.store(now_ms(), Ordering::Relaxed);
        if caught_up {
            self.caught_up();
        }
    }

    /// Called by the ring consumer now and then: raises an idle-class writer that has not
    /// handled a session event for [`STALL_LIMIT`] (it gets no CPU: every CPU is taken by
    /// normal-priority work), so that its flushes stay on time.
    pub fn raise_if_stalled(&self) {
        self.raise_if_stalled_at(now_ms());
    }

    /// [`WriterPriority::raise_if_stalled`] at the time `now` ([`now_ms`]).
    fn raise_if_stalled_at(&self, now: u64) {
        let since = now.saturating_sub(self.last_step_ms.load(Ordering::Relaxed));
        if self.class.is_idle() && since > STALL_LIMIT.as_millis() as u64 {
            self.raise();
        }
    }

    /// Called by the writer when it found nothing left to write: back to the idle class if
    /// the consumer had raised it [`CALM`] ago or more.
    fn caught_up(&self) {
        self.caught_up_at(now_ms());
    }

    /// [`WriterPriority::caught_up`] at the time `now` ([`now_ms`]).
    fn caught_up_at(&self, now: u64) {
        let since = now.saturating_sub(self.class.raised_at_ms());
        if !self.class.is_idle() && since >= CALM.as_millis() as u64 {
            self.class.set(true);
        }
    }

    /// Called by the ring consumer when the writer falls behind: the writer's thread back to
    /// normal priority (once; no-op while it is there already).
    pub fn raise(&self) {
        self.class.raise();
    }

    /// Times the writer was raised to normal priority because it fell behind.
    pub fn raised(&self) -> u64 {
        self.class.raised()
    }

    /// Whether the writer's thread is in the idle class now.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.class.is_idle()
    }
}

/// The calling thread as the capture writer of one recording: in the idle class from
/// [`WriterThread::lower`] on, back at normal priority when dropped (the thread goes on
/// running the caller's code).
#[derive(Debug, Default)]
pub struct WriterThread {
    priority: Arc<WriterPriority>,
}

impl WriterThread {
    /// The calling thread as the writer, still at normal priority: it lowers itself once the
    /// recording has started ([`WriterThread::lower`]). Loading the probes takes seconds of
    /// CPU, and nothing raises an idle-class thread before the ring consumer and its guard
    /// run: on a node whose CPUs are all taken, a recorder that loaded its probes in the
    /// idle class had not written its first row group after 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the calling thread (the one that made this) in the idle class
    /// ([`WriterPriority::lower`]).
    pub fn lower(&self) {
        self.priority.lower();
    }

    /// The state the ring consumer raises ([`WriterPriority::raise`]).
    pub fn priority(&self) -> Arc<WriterPriority> {
        self.priority.clone()
    }

    /// The writer handled a session event ([`WriterPriority::step`]).
    pub fn step(&self, caught_up: bool) {
        self.priority.step(caught_up);
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let raised = self.priority.raised();
        if raised > 0 {
            tracing::debug!("capture writer raised to normal priority {raised} times");
        }
        self.priority.class.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(tid: i32) -> libc::c_int {
        // SAFETY: a plain query of a thread of this process.
        unsafe { libc::sched_getscheduler(tid) }
    }

    /// The writer's thread goes idle, the consumer raises it, the writer lowers itself again;
    /// the raise is counted once per fall-behind.
    #[test]
    fn lower_raise_and_catch_up_change_the_threads_policy() {
        let p = Arc::new(WriterPriority::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let q = p.clone();
        let t = std::thread::spawn(move || {
            q.lower();
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            rx.recv().unwrap();
            // caught up right after the raise: stays normal; a calm period later: idle
            let raised_at = q.class.raised_at_ms();
            q.caught_up_at(raised_at + CALM.as_millis() as u64 - 1);
            assert!(!q.is_idle());
            q.caught_up_at(raised_at + CALM.as_millis() as u64);
            tid_tx.send(0).unwrap();
            rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        if p.class.refused() {
            // a sandbox without the policy change: the writer stays normal, nothing else
            assert!(!p.is_idle());
            tx.send(()).unwrap();
            tx.send(()).unwrap();
            t.join().unwrap();
            return;
        }
        assert_eq!(policy_of(tid), libc::SCHED_IDLE);
        assert!(p.is_idle());
        // a writer that stepped recently is left idle; one silent for the limit is raised
        let last = p.last_step_ms.load(Ordering::Relaxed);
        p.raise_if_stalled_at(last + STALL_LIMIT.as_millis() as u64);
        assert!(p.is_idle());
        p.raise_if_stalled_at(last + STALL_LIMIT.as_millis() as u64 + 1);
        assert_eq!(policy_of(tid), libc::SCHED_OTHER);
        assert_eq!(p.raised(), 1);
        p.raise();
        assert_eq!(policy_of(tid), libc::SCHED_OTHER);
        assert_eq!(p.raised(), 1);
        p.raise(); // already normal: nothing
        assert_eq!(p.raised(), 1);
        tx.send(()).unwrap();
        tid_rx.recv().unwrap();
        assert_eq!(policy_of(tid), libc::SCHED_IDLE);
        tx.send(()).unwrap();
        t.join().unwrap();
    }
}
