//! The ring consumer's CPU priority: the idle class while the ring buffer keeps up, normal
//! while it backs up, decided by a guard thread that reads the ring's fill level.
//!
//! The ring consumer drains the ring buffer about every 10 ms on a runtime worker. At normal
//! priority each drain can take the CPU from a traced thread that wakes up meanwhile: at a
//! fixed 10 k req/s against nginx, measured with every latency kept (`bench_load`), the p99
//! rose by 20–36 % with the capture writer alone in the idle class ([`crate::priority`]), and
//! by 0–9 % with the consumer's workers in it too (bench/results.md, "Session 17").
//! The idle class alone is not enough: on a node whose CPUs are all taken it gets almost no
//! CPU, and the ring fills and drops events (nginx with two workers at saturation: 91 % of
//! the events lost with every recorder thread idle). The consumer cannot notice that
//! itself, as it does not run.
//!
//! So a guard thread at normal priority, awake for a few microseconds every
//! [`POLL`], reads the ring's producer and consumer positions (the ring's first two pages,
//! mapped read-only: two loads, no syscall) and raises the consumer's threads back to
//! `SCHED_OTHER` when more than 1/8 of the ring is pending or the consumer has not drained
//! for [`STALL_LIMIT`]; it lowers them again once less than 1/64 has been pending and the
//! consumer has drained on time for [`CALM`]. It raises the capture writer with them (a
//! consumer blocked on the writer's full channel backs the ring up too), and a stalled
//! writer ([`WriterPriority::raise_if_stalled`]), whose usual raiser is the consumer.
//!
//! The consumer's threads are the runtime workers it runs on: each registers when it drains
//! ([`ConsumerPriority::drained`]). The guard's end puts them back at normal priority, as
//! the workers go on running other tasks. A kernel that refuses the policy change leaves
//! everything at normal priority, as before.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::priority::CALM;
use crate::priority::{normal_priority_here, now_ms, ThreadClass, WriterPriority};

/// How often the guard reads the ring's fill level.
pub const POLL: Duration = Duration::from_millis(25);
/// A consumer that has not drained for this long is raised, whatever the fill level.
pub const STALL_LIMIT: Duration = Duration::from_millis(500);

/// The ring buffer's producer and consumer positions, mapped read-only.
#[derive(Debug)]
pub struct RingLevel {
    base: *mut libc::c_void,
    page: usize,
}

// SAFETY: the mapping is only read, with atomic loads, and unmapped once on drop.
unsafe impl Send for RingLevel {}

impl RingLevel {
    /// Maps the consumer and producer pages of the `BPF_MAP_TYPE_RINGBUF` map `fd`. The
    /// mapping stays valid after `fd` is closed.
    pub fn map(fd: BorrowedFd<'_>) -> std::io::Result<RingLevel> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a new shared read-only mapping of two pages of a valid fd; the kernel
        // checks the offset and size against the map.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingLevel { base, page })
    }

    /// Bytes written by the programs and not yet consumed (record headers included).
    pub fn pending(&self) -> u64 {
        // SAFETY: both positions are 8-byte aligned u64s at the start of their pages, inside
        // the mapping, which lives as long as `self`; the kernel and the consumer write them
        // atomically.
        let (consumer, producer) = unsafe {
            (
                (*(self.base as *const AtomicU64)).load(Ordering::Acquire),
                (*(self.base.byte_add(self.page) as *const AtomicU64)).load(Ordering::Acquire),
            )
        };
        producer.saturating_sub(consumer)
    }
}

impl Drop for RingLevel {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base, 2 * self.page) };
    }
}

/// The consumer's class and threads, shared by the consumer and the guard.
#[derive(Debug, Default)]
pub struct ConsumerPriority {
    /// The runtime workers the consumer ran on (the guard decides their class).
    class: ThreadClass,
    /// When the consumer last drained the ring ([`now_ms`]).
    last_drain_ms: AtomicU64,
}

impl ConsumerPriority {
    /// Called on the consumer's thread after each drain: notes the time, and a worker not
    /// seen before joins the consumer's class.
    pub fn drained(&self) {
        self.last_drain_ms.store(now_ms(), Ordering::Relaxed);
        self.class.join_current();
    }

    /// Times the guard raised the consumer to normal priority because the ring backed up or
    /// the consumer stalled.
    pub fn raised(&self) -> u64 {
        self.class.raised()
    }
}

/// The guard's decision for one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stay,
    Raise,
    Lower,
}

/// The guard's state between readings.
#[derive(Debug)]
struct Rule {
    /// Pending bytes above which the consumer is raised (1/8 of the ring).
    high: u64,
    /// Pending bytes below which a raised consumer counts as caught up (1/64 of the ring).
    low: u64,
    /// Since when ([`now_ms`]) a raised consumer has been caught up, if it is.
    calm_since: Option<u64>,
}

impl Rule {
    fn new(ring_bytes: u64) -> Rule {
        Rule {
            high: ring_bytes / 8,
            low: ring_bytes / 64,
            calm_since: None,
        }
    }

    /// What to do at time `now` with `pending` bytes in the ring, the consumer's last drain
    /// at `last_drain` and its threads `idle` or not.
    fn step(&mut self, now: u64, pending: u64, last_drain: u64, idle: bool) -> Step {
        let stalled = now.saturating_sub(last_drain) > STALL_LIMIT.as_millis() as u64;
        if idle {
            self.calm_since = None;
            return if pending > self.high || stalled {
                Step::Raise
            } else {
                Step::Stay
            };
        }
        let on_time = now.saturating_sub(last_drain) <= 4 * POLL.as_millis() as u64;
        if pending >= self.low || !on_time {
            self.calm_since = None;
            return Step::Stay;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now - since >= CALM.as_millis() as u64 {
            self.calm_since = None;
            Step::Lower
        } else {
            Step::Stay
        }
    }
}

/// The guard thread of one recording: stops and puts the consumer's threads back at normal
/// priority when dropped.
#[derive(Debug)]
pub struct Guard {
    priority: Arc<ConsumerPriority>,
}

impl Guard {
    /// Puts the consumer in the idle class and starts the guard over `level` (a ring of
    /// `ring_bytes`), which also raises `writer` with the consumer and when it stalls.
    /// `None` if the thread could not be started (the consumer then stays at normal
    /// priority).
    pub fn start(level: RingLevel, ring_bytes: u64, writer: Arc<WriterPriority>) -> Option<Guard> {
        let priority = Arc::new(ConsumerPriority::default());
        priority.last_drain_ms.store(now_ms(), Ordering::Relaxed);
        priority.class.set(true);
        let p = priority.clone();
        let spawned = std::thread::Builder::new()
            .name("podtrace-guard".into())
            .spawn(move || guard(&p, || level.pending(), ring_bytes, &writer));
        match spawned {
            Ok(_) => Some(Guard { priority }),
            Err(e) => {
                tracing::debug!("ring consumer stays at normal CPU priority: no guard thread: {e}");
                None
            }
        }
    }

    /// The state the consumer reports its drains to.
    pub fn priority(&self) -> &Arc<ConsumerPriority> {
        &self.priority
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.priority.class.end();
        let raised = self.priority.raised();
        if raised > 0 {
            tracing::debug!("ring consumer raised to normal priority {raised} times");
        }
    }
}

/// The guard's loop: a reading every [`POLL`] until the class ends.
fn guard(
    priority: &ConsumerPriority,
    pending: impl Fn() -> u64,
    ring_bytes: u64,
    writer: &WriterPriority,
) {
    // not the class of the thread that started it (the capture writer's, idle)
    normal_priority_here();
    let class = &priority.class;
    let mut rule = Rule::new(ring_bytes);
    while !class.ended() {
        std::thread::sleep(POLL);
        writer.raise_if_stalled();
        if class.refused() {
            continue;
        }
        let last = priority.last_drain_ms.load(Ordering::Relaxed);
        match rule.step(now_ms(), pending(), last, class.is_idle()) {
            Step::Stay => {}
            Step::Raise => {
                class.raise();
                // the backlog may be the writer's: the consumer blocks on a full channel
                writer.raise();
            }
            Step::Lower => class.set(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: u64 = 64 << 10;

    #[test]
    fn an_idle_consumer_is_raised_on_backlog_or_stall_only() {
        let mut r = Rule::new(RING);
        assert_eq!(r.step(1000, RING / 8, 990, true), Step::Stay);
        assert_eq!(r.step(1000, RING / 8 + 1, 990, true), Step::Raise);
        let limit = STALL_LIMIT.as_millis() as u64;
        assert_eq!(r.step(1000 + limit, 0, 1000, true), Step::Stay);
        assert_eq!(r.step(1001 + limit, 0, 1000, true), Step::Raise);
    }

    #[test]
    fn a_raised_consumer_is_lowered_after_a_calm_second() {
        let mut r = Rule::new(RING);
        let calm = CALM.as_millis() as u64;
        assert_eq!(r.step(1000, RING / 64 - 1, 1000, false), Step::Stay);
        assert_eq!(
            r.step(1000 + calm / 2, 0, 1000 + calm / 2, false),
            Step::Stay
        );
        // a reading at the low mark restarts the calm period
        assert_eq!(
            r.step(1000 + calm / 2 + 1, RING / 64, 1000 + calm / 2, false),
            Step::Stay
        );
        assert_eq!(r.step(1000 + calm, 0, 1000 + calm, false), Step::Stay);
        // so does a late drain
        let late = 1000 + calm + 5 * POLL.as_millis() as u64;
        assert_eq!(r.step(late, 0, 1000 + calm, false), Step::Stay);
        assert_eq!(r.step(late + 1, 0, late, false), Step::Stay);
        assert_eq!(r.step(late + 1 + calm, 0, late + calm, false), Step::Lower);
        // and the next calm period starts afresh
        assert_eq!(r.step(late + 2 + calm, 0, late + calm, false), Step::Stay);
    }

    fn policy_of(tid: i32) -> libc::c_int {
        // SAFETY: a plain query of a thread of this process.
        unsafe { libc::sched_getscheduler(tid) }
    }

    /// A worker that drains joins the idle class; the guard raises it when the ring backs
    /// up, lowers it after a calm period, and its end leaves the worker at normal priority.
    #[test]
    fn the_guard_moves_the_consumer_between_classes() {
        let pending = Arc::new(AtomicU64::new(0));
        let priority = Arc::new(ConsumerPriority::default());
        priority.class.set(true);
        let (p, level) = (priority.clone(), pending.clone());
        // a writer without a thread: never idle, so never raised
        let writer = WriterPriority::default();
        let g =
            std::thread::spawn(move || guard(&p, || level.load(Ordering::Relaxed), RING, &writer));
        // the consumer: a thread that drains every 5 ms until the guard ends
        let p = priority.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let c = std::thread::spawn(move || {
            p.drained();
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            while !p.class.ended() {
                std::thread::sleep(Duration::from_millis(5));
                p.drained();
            }
        });
        let tid = tid_rx.recv().unwrap();
        let wait_for = |want: libc::c_int| {
            for _ in 0..400 {
                if policy_of(tid) == want {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        if priority.class.refused() {
            // a sandbox without the policy change: the consumer stays normal, nothing else
            assert!(!priority.class.is_idle());
        } else {
            assert_eq!(policy_of(tid), libc::SCHED_IDLE);
            pending.store(RING / 8 + 1, Ordering::Relaxed);
            assert!(wait_for(libc::SCHED_OTHER), "raised on backlog");
            assert_eq!(priority.raised(), 1);
            pending.store(0, Ordering::Relaxed);
            assert!(wait_for(libc::SCHED_IDLE), "lowered after a calm period");
            assert_eq!(priority.raised(), 1);
        }
        drop(Guard {
            priority: priority.clone(),
        });
        assert_eq!(policy_of(tid), libc::SCHED_OTHER);
        g.join().unwrap();
        c.join().unwrap();
        // a worker draining after the end stays normal
        priority.drained();
        // SAFETY: gettid has no preconditions.
        assert_eq!(policy_of(unsafe { libc::gettid() }), libc::SCHED_OTHER);
    }
}
