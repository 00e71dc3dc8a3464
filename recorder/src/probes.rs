//! Loading and attaching the eBPF programs of `podtrace-recorder-ebpf` with aya 0.14.
//!
//! [`Probes::load`] checks privileges and BTF first (so the error says what is missing),
//! sizes the maps (ring buffer, one scratch slot per possible CPU), sets the snaplen,
//! loads both `tp_btf` programs and attaches them (or, with [`ProbeSet::Kprobe`], the
//! kprobe set, refused with a message naming CONFIG_KPROBES on kernels without kprobes).
//! Dropping [`Probes`] detaches them.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, KProbe};
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
    /// Per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// The event ring buffer.
    pub ring: RingBuf<MapData>,
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
            .override_global(names::GLOBAL_SNAPLEN, &snaplen, true)
            .map_max_entries(names::MAP_EVENTS, ring_bytes)
            .map_max_entries(names::MAP_SCRATCH, ncpu)
            .load(PODTRACE_BPF_OBJECT)
            .map_err(|e| load_error(&e, String::new()))?;
        match set {
            ProbeSet::Syscalls => attach_syscalls(&mut ebpf, &btf)?,
            ProbeSet::Kprobe => attach_kprobes(&mut ebpf)?,
        }
        let cgroups = take_map(&mut ebpf, names::MAP_CGROUPS, BpfHashMap::try_from)?;
        let counters = take_map(&mut ebpf, names::MAP_COUNTERS, PerCpuArray::try_from)?;
        let ring = take_map(&mut ebpf, names::MAP_EVENTS, RingBuf::try_from)?;
        Ok(Probes {
            ebpf,
            cgroups,
            counters,
            ring,
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
     default syscall probes (tp_btf) instead";

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
