//! Loading and attaching the eBPF programs of `podtrace-recorder-ebpf` with aya 0.14.
//!
//! [`Probes::load`] checks privileges and BTF first (so the error says what is missing),
//! sizes the maps (ring buffer, one scratch slot per possible CPU), sets the snaplen, then
//! loads and attaches one hook set:
//! - [`ProbeSet::Auto`] (default): the first set this kernel can attach of
//!   [`ProbeSet::Sockets`], [`ProbeSet::Tracepoints`], [`ProbeSet::TpBtf`];
//!   [`Probes::attached`] names it and why the ones before it were not used;
//! - [`ProbeSet::Sockets`]: `tp_btf` on the socket tracepoints `sock_send_length`,
//!   `sock_recv_length`, `inet_sock_set_state` and `tcp_destroy_sock` (no syscall hook at
//!   all), an error where they are missing;
//! - [`ProbeSet::Tracepoints`]: the per-syscall tracepoints `syscalls/sys_enter_<call>` /
//!   `sys_exit_<call>` of the followed socket calls, so that no other syscall runs a
//!   podtrace program (tracefs is mounted on /sys/kernel/tracing when no tracefs is mounted
//!   yet; it is left mounted); an error where they are missing;
//! - [`ProbeSet::TpBtf`]: the `tp_btf` set directly;
//! - [`ProbeSet::Kprobe`]: the kprobe set, refused with a message naming CONFIG_KPROBES on
//!   kernels without kprobes.
//!
//! Dropping [`Probes`] detaches them.

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, KProbe, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use podtrace_recorder_ebpf::{names, PODTRACE_BPF_OBJECT};

use crate::config::ProbeSet;
use crate::error::{RecorderError, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The full `source()` chain of an error, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Effective capabilities of this process (`CapEff` of /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Fails with [`RecorderError::Privileges`] unless CAP_BPF + CAP_PERFMON or CAP_SYS_ADMIN
/// are effective.
pub fn check_privileges() -> Result<()> {
    let Some(caps) = effective_caps() else {
        return Ok(());
    }; // unknown: let the kernel decide
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    Err(RecorderError::Privileges {
        detail: format!(" (effective capabilities: {caps:#x})"),
    })
}

/// Loaded and attached programs plus the maps user space works with.
pub struct Probes {
    /// The object; owns the programs and their links (dropping it detaches).
    pub ebpf: Ebpf,
    /// Targeted cgroup ids.
    pub cgroups: BpfHashMap<MapData, u64, u8>,
    /// The direct-mapped front of `cgroups` ([`names::MAP_CG_SLOTS`]).
    pub cg_slots: Array<MapData, u64>,
    /// Per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// The event ring buffer.
    pub ring: RingBuf<MapData>,
    /// Which hooks are attached, for people: e.g. `syscall tracepoints (29 events)` or
    /// `tp_btf sys_enter/sys_exit (fallback: ...)`.
    pub attached: String,
}

fn is_eperm(e: &dyn std::error::Error) -> bool {
    let text = chain(e);
    text.contains("Operation not permitted") || text.contains("EPERM")
}

impl Probes {
    /// Loads and attaches the programs of a probe set.
    pub fn load(snaplen: u32, ring_bytes: u32, set: ProbeSet) -> Result<Probes> {
        check_privileges()?;
        let btf = Btf::from_sys_fs().map_err(|e| RecorderError::MissingBtf(chain(&e)))?;
        let ncpu = aya::util::nr_cpus().map_err(|(what, e)| RecorderError::Io {
            what: what.to_string(),
            source: e,
        })?;
        let ncpu = u32::try_from(ncpu).unwrap_or(u32::MAX).max(1);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // the task-storage map (`pt_task`) is created and used by the programs only;
            // aya has no user-space type for it
            .allow_unsupported_maps()
            .override_global(names::GLOBAL_SNAPLEN, &snaplen, true)
            .map_max_entries(names::MAP_EVENTS, ring_bytes)
            .map_max_entries(names::MAP_SCRATCH, ncpu)
            .load(PODTRACE_BPF_OBJECT)
            .map_err(|e| load_error(&e, String::new()))?;
        let attached = match set {
            ProbeSet::Auto => match attach_sockets(&mut ebpf, &btf) {
                Ok(()) => SOCKETS_ATTACHED.to_string(),
                Err(sock_why) => match attach_tracepoints(&mut ebpf) {
                    Ok(n) => format!("syscall tracepoints ({n} events; fallback: {sock_why})"),
                    Err(why) => {
                        tracing::info!(
                            "socket and per-syscall tracepoints unavailable ({sock_why}; {why}): using tp_btf"
                        );
                        attach_syscalls(&mut ebpf, &btf)?;
                        format!("tp_btf sys_enter/sys_exit (fallback: {sock_why}; {why})")
                    }
                },
            },
            ProbeSet::Sockets => match attach_sockets(&mut ebpf, &btf) {
                Ok(()) => SOCKETS_ATTACHED.to_string(),
                Err(why) => {
                    return Err(RecorderError::Unsupported(format!(
                    "--probes sockets: {why}; --probes auto falls back to the syscall tracepoints"
                )))
                }
            },
            ProbeSet::Tracepoints => match attach_tracepoints(&mut ebpf) {
                Ok(n) => format!("syscall tracepoints ({n} events)"),
                Err(why) => {
                    return Err(RecorderError::Unsupported(format!(
                        "--probes tracepoints: {why}; --probes auto falls back to tp_btf"
                    )))
                }
            },
            ProbeSet::TpBtf => {
                attach_syscalls(&mut ebpf, &btf)?;
                "tp_btf sys_enter/sys_exit".to_string()
            }
            ProbeSet::Kprobe => {
                attach_kprobes(&mut ebpf)?;
                "kprobes tcp_sendmsg/tcp_recvmsg/tcp_connect/inet_csk_accept/tcp_close".to_string()
            }
        };
        let cgroups = take_map(&mut ebpf, names::MAP_CGROUPS, BpfHashMap::try_from)?;
        let cg_slots = take_map(&mut ebpf, names::MAP_CG_SLOTS, Array::try_from)?;
        let counters = take_map(&mut ebpf, names::MAP_COUNTERS, PerCpuArray::try_from)?;
        let ring = take_map(&mut ebpf, names::MAP_EVENTS, RingBuf::try_from)?;
        Ok(Probes {
            ebpf,
            cgroups,
            cg_slots,
            counters,
            ring,
            attached,
        })
    }
}

/// A load failure: EPERM means missing privileges, anything else is a load error.
fn load_error(e: &dyn std::error::Error, prefix: String) -> RecorderError {
    if is_eperm(e) {
        RecorderError::Privileges {
            detail: format!(" ({})", chain(e)),
        }
    } else {
        RecorderError::Load(format!("{prefix}{}", chain(e)))
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, prog: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(prog)
        .ok_or_else(|| RecorderError::Load(format!("program {prog} missing")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| RecorderError::Load(chain(&e)))
}

fn attach_syscalls(ebpf: &mut Ebpf, btf: &Btf) -> Result<()> {
    for (prog, tp) in [
        (names::PROG_SYS_ENTER, names::TP_SYS_ENTER),
        (names::PROG_SYS_EXIT, names::TP_SYS_EXIT),
    ] {
        let p: &mut BtfTracePoint = program(ebpf, prog)?;
        p.load(tp, btf)
            .map_err(|e| load_error(&e, format!("{prog}: ")))?;
        p.attach().map_err(|e| RecorderError::Attach {
            program: prog,
            detail: chain(&e),
        })?;
    }
    Ok(())
}

/// The "probes attached" text of the socket tracepoint set.
const SOCKETS_ATTACHED: &str =
    "socket tracepoints (tp_btf sock_send_length, sock_recv_length, inet_sock_set_state, tcp_destroy_sock)";

/// Loads and attaches the socket tracepoint programs ([`names::SOCK_TPS`]). On any failure
/// (a kernel before 6.3 has no sock_send_length/sock_recv_length) the programs loaded so
/// far are unloaded again (nothing stays attached) and the reason is returned.
fn attach_sockets(ebpf: &mut Ebpf, btf: &Btf) -> std::result::Result<(), String> {
    let result = (|| -> std::result::Result<(), String> {
        for (prog, tp) in names::SOCK_TPS {
            let p: &mut BtfTracePoint = program(ebpf, prog).map_err(|e| e.to_string())?;
            p.load(tp, btf)
                .map_err(|e| format!("loading {prog} on tracepoint {tp}: {}", chain(&e)))?;
        }
        for (prog, tp) in names::SOCK_TPS {
            let p: &mut BtfTracePoint = program(ebpf, prog).map_err(|e| e.to_string())?;
            p.attach()
                .map_err(|e| format!("attaching {prog} to {tp}: {}", chain(&e)))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (prog, _) in names::SOCK_TPS {
            if let Ok(p) = program::<BtfTracePoint>(ebpf, prog) {
                let _ = p.unload();
            }
        }
    }
    result
}

/// tracefs mount points, in the order aya looks for them.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The mounted tracefs that has the per-syscall events, mounting tracefs on
/// /sys/kernel/tracing when none is mounted (left mounted: other recorders may use it).
pub fn syscall_events_dir() -> std::result::Result<std::path::PathBuf, String> {
    let find = || {
        TRACEFS
            .iter()
            .map(|m| std::path::Path::new(m).join("events/syscalls"))
            .find(|p| p.is_dir())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let target = std::path::Path::new(TRACEFS[0]);
    let empty = std::fs::read_dir(target)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Err(format!(
            "no tracefs with events/syscalls under {} (CONFIG_FTRACE_SYSCALLS?)",
            TRACEFS.join(" or ")
        ));
    }
    let src = c"tracefs";
    let dst = c"/sys/kernel/tracing";
    // SAFETY: NUL-terminated strings that live across the call; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "tracefs is not mounted and mounting it on {} failed: {}",
            TRACEFS[0],
            std::io::Error::last_os_error()
        ));
    }
    find().ok_or_else(|| format!("tracefs mounted on {} has no events/syscalls", TRACEFS[0]))
}

/// The per-syscall tracepoint programs.
const TP_PROGRAMS: [&str; 4] = [
    names::PROG_TP_ENTER,
    names::PROG_TP_CLOSE,
    names::PROG_TP_SENDFILE,
    names::PROG_TP_EXIT,
];

/// Loads the tracepoint programs and attaches them to `sys_enter_<call>`/`sys_exit_<call>`
/// of every followed call; returns the number of events attached. On any failure the
/// programs are unloaded again (nothing stays attached) and the reason is returned.
fn attach_tracepoints(ebpf: &mut Ebpf) -> std::result::Result<usize, String> {
    let dir = syscall_events_dir()?;
    let mut events = Vec::new();
    for call in names::TP_SYSCALLS {
        let enter = match call {
            "close" => names::PROG_TP_CLOSE,
            "sendfile64" => names::PROG_TP_SENDFILE,
            _ => names::PROG_TP_ENTER,
        };
        events.push((enter, format!("sys_enter_{call}")));
        if call != "close" {
            events.push((names::PROG_TP_EXIT, format!("sys_exit_{call}")));
        }
    }
    if let Some((_, missing)) = events.iter().find(|(_, e)| !dir.join(e).is_dir()) {
        return Err(format!("tracepoint syscalls/{missing} missing"));
    }
    let result = (|| -> std::result::Result<usize, String> {
        for prog in TP_PROGRAMS {
            let p: &mut TracePoint = program(ebpf, prog).map_err(|e| e.to_string())?;
            p.load()
                .map_err(|e| format!("loading {prog}: {}", chain(&e)))?;
        }
        for (prog, event) in &events {
            let p: &mut TracePoint = program(ebpf, prog).map_err(|e| e.to_string())?;
            p.attach(names::TP_CATEGORY_SYSCALLS, event)
                .map_err(|e| format!("attaching {prog} to syscalls/{event}: {}", chain(&e)))?;
        }
        Ok(events.len())
    })();
    if result.is_err() {
        for prog in TP_PROGRAMS {
            if let Ok(p) = program::<TracePoint>(ebpf, prog) {
                let _ = p.unload();
            }
        }
    }
    result
}

/// Whether this kernel can attach kprobes: a `kprobe` perf PMU or tracefs `kprobe_events`.
pub fn kprobes_available() -> bool {
    [
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

const NO_KPROBES: &str = "the kprobe probe set needs a kernel built with CONFIG_KPROBES=y \
     (and CONFIG_KPROBE_EVENTS=y); this kernel has no kprobe support: record with the \
     default probes (--probes auto) instead";

fn attach_kprobes(ebpf: &mut Ebpf) -> Result<()> {
    if !kprobes_available() {
        return Err(RecorderError::Unsupported(NO_KPROBES.into()));
    }
    for (prog, func, _is_return) in names::KPROBES {
        let p: &mut KProbe = program(ebpf, prog)?;
        p.load().map_err(|e| load_error(&e, format!("{prog}: ")))?;
        p.attach(func, 0).map_err(|e| {
            RecorderError::Unsupported(format!(
                "attaching {prog} to {func}: {}; {NO_KPROBES}",
                chain(&e)
            ))
        })?;
    }
    Ok(())
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    conv: impl FnOnce(aya::maps::Map) -> std::result::Result<T, aya::maps::MapError>,
) -> Result<T> {
    let map = ebpf.take_map(name).ok_or(RecorderError::Map {
        map: name,
        detail: "not in the object".into(),
    })?;
    conv(map).map_err(|e| RecorderError::Map {
        map: name,
        detail: chain(&e),
    })
}

/// Reads every counter: `totals[i]` and `per_cpu[i][cpu]`.
pub fn read_counters(counters: &PerCpuArray<MapData, u64>) -> Result<(Vec<u64>, Vec<Vec<u64>>)> {
    let n = podtrace_recorder_ebpf::event::CTR_MAX;
    let mut totals = Vec::with_capacity(n as usize);
    let mut per_cpu = Vec::with_capacity(n as usize);
    for i in 0..n {
        let vals = counters.get(&i, 0).map_err(|e| RecorderError::Map {
            map: names::MAP_COUNTERS,
            detail: chain(&e),
        })?;
        let v: Vec<u64> = vals.iter().copied().collect();
        totals.push(v.iter().sum());
        per_cpu.push(v);
    }
    Ok((totals, per_cpu))
}
