//! Kernel boot-time clock → wall clock.
//!
//! Events carry `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME, which keeps counting during
//! suspend). The offset to wall-clock time is CLOCK_REALTIME − CLOCK_BOOTTIME, sampled a
//! few times with the tightest bracket kept.

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock ids used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_REALTIME − CLOCK_BOOTTIME in ns.
pub fn boot_time_offset_ns() -> i64 {
    let mut best: Option<(i128, i128)> = None; // (bracket width, offset)
    for _ in 0..5 {
        let b1 = now(libc::CLOCK_BOOTTIME);
        let r = now(libc::CLOCK_REALTIME);
        let b2 = now(libc::CLOCK_BOOTTIME);
        let width = b2 - b1;
        let offset = r - (b1 + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map(|(_, o)| o as i64).unwrap_or(0)
}

/// Converts a boot-time timestamp to wall-clock ns since the Unix epoch.
pub fn to_wall(boot_ns: u64, offset_ns: i64) -> u64 {
    (boot_ns as i128 + offset_ns as i128).clamp(0, u64::MAX as i128) as u64
}

/// Wall-clock now, ns since the Unix epoch.
pub fn wall_now_ns() -> u64 {
    now(libc::CLOCK_REALTIME).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_maps_boottime_to_now() {
        let off = boot_time_offset_ns();
        let boot = now(libc::CLOCK_BOOTTIME) as u64;
        let wall = wall_now_ns();
        let diff = (to_wall(boot, off) as i128 - wall as i128).abs();
        assert!(diff < 50_000_000, "conversion off by {diff} ns");
    }
}
