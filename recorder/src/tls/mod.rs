//! TLS plaintext: attaching the uprobes of `bpf/tls.bpf.h` to the OpenSSL 3 copies the
//! targeted processes use.
//!
//! [`TlsHooks::start`] loads the programs (4 entry uprobes, one return program); then
//! [`TlsHooks::rescan`] (called at start and on every rescan tick of the recorder) lists
//! the processes of the targeted cgroups (`cgroup.procs` of each targeted cgroup
//! directory), reads their `/proc/PID/maps`, and checks each executable file mapping once
//! per file (device + inode) for exported `SSL_write`/`SSL_read` (Debian's `libssl.so.3`,
//! binaries that link OpenSSL statically and export it such as Node.js). A file that has
//! them gets the probes, once, whichever process and container it was found through
//! (through `/proc/PID/root/...`, so container file systems work). New processes and
//! libraries loaded later (a restarted container, a lazy `import ssl`) are picked up at
//! the next scan: a new process at once, a known process's maps again every
//! [`MAPS_RESCAN_TICKS`] ticks.
//!
//! The uprobes fire for every process that maps the file; the programs' cgroup filter
//! (the same as the socket programs') drops untargeted ones first.

pub mod discover;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray};
use aya::programs::uprobe::UProbeScope;
use aya::programs::UProbe;
use aya::Ebpf;
use podtrace_format::model::{Record, Stat};
use podtrace_recorder_ebpf::tls as t;

use crate::cgroups::{cgroup_id, descendants, Cgroup2};
use crate::clock::wall_now_ns;
use crate::error::{RecorderError, Result};
use crate::probes::chain;

/// A known process's maps are read again every this many scans (new processes at once).
pub const MAPS_RESCAN_TICKS: u32 = 8;
/// At most this many files are remembered as checked (hooked or not); beyond it the
/// oldest half is forgotten (counted in `tls_files_forgotten`).
pub const MAX_CHECKED_FILES: usize = 65_536;
/// A targeted cgroup id whose directory is unknown makes the cgroup tree be walked again
/// at most this often.
const REWALK: Duration = Duration::from_secs(4);

/// A hooked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookedFile {
    /// Path as the process it was found in sees it.
    pub path: String,
    /// The symbols hooked.
    pub symbols: Vec<&'static str>,
}

/// Counters of discovery (user space).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoverCounters {
    /// Scans done.
    pub scans: u64,
    /// Files checked for the symbols.
    pub files_checked: u64,
    /// Files whose probes could not be attached (see the log).
    pub attach_failures: u64,
    /// Checked-file entries forgotten at [`MAX_CHECKED_FILES`].
    pub files_forgotten: u64,
}

/// The TLS programs and the files they are attached to.
pub struct TlsHooks {
    counters: PerCpuArray<MapData, u64>,
    /// (dev, inode) of files checked: Some = hooked.
    checked: HashMap<(u64, u64), Option<HookedFile>>,
    /// Hooked files in hook order.
    hooked: Vec<HookedFile>,
    /// Known processes: scans since their maps were last read.
    pids: BTreeMap<u32, u32>,
    cg: Option<Cgroup2>,
    dirs: HashMap<u64, PathBuf>,
    last_walk: Option<Instant>,
    /// Discovery counters.
    pub stats: DiscoverCounters,
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe> {
    ebpf.program_mut(name)
        .ok_or_else(|| RecorderError::Load(format!("program {name} missing")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| RecorderError::Load(chain(&e)))
}

impl TlsHooks {
    /// Loads the TLS programs (nothing attached yet: see [`TlsHooks::rescan`]).
    pub fn start(ebpf: &mut Ebpf) -> Result<TlsHooks> {
        let mut names: Vec<&str> = t::ENTRY_PROGRAMS.iter().map(|(p, _)| *p).collect();
        names.push(t::RETURN_PROGRAM);
        for name in names {
            program(ebpf, name)?
                .load()
                .map_err(|e| RecorderError::Load(format!("{name}: {}", chain(&e))))?;
        }
        let map = ebpf.take_map(t::MAP_COUNTERS).ok_or(RecorderError::Map {
            map: t::MAP_COUNTERS,
            detail: "not in the object".into(),
        })?;
        let counters = PerCpuArray::try_from(map).map_err(|e| RecorderError::Map {
            map: t::MAP_COUNTERS,
            detail: chain(&e),
        })?;
        Ok(TlsHooks {
            counters,
            checked: HashMap::new(),
            hooked: Vec::new(),
            pids: BTreeMap::new(),
            cg: Cgroup2::detect().ok(),
            dirs: HashMap::new(),
            last_walk: None,
            stats: DiscoverCounters::default(),
        })
    }

    /// The files hooked so far.
    pub fn hooked(&self) -> &[HookedFile] {
        &self.hooked
    }

    /// One line for people: which files are hooked.
    pub fn describe(&self) -> String {
        if self.hooked.is_empty() {
            return "TLS uprobes: no OpenSSL found yet in the targeted processes".into();
        }
        let files: Vec<&str> = self.hooked.iter().map(|h| h.path.as_str()).collect();
        format!("TLS uprobes on {}", files.join(", "))
    }

    /// The directories of the targeted cgroup ids (walking the cgroup tree when an id is
    /// new; at most every [`REWALK`] while one stays unknown).
    fn target_dirs(&mut self, ids: &BTreeSet<u64>) -> Vec<PathBuf> {
        let Some(cg) = &self.cg else {
            return Vec::new();
        };
        self.dirs.retain(|id, _| ids.contains(id));
        let missing = ids.iter().any(|id| !self.dirs.contains_key(id));
        if missing && self.last_walk.is_none_or(|t| t.elapsed() >= REWALK) {
            self.last_walk = Some(Instant::now());
            let mut all = vec![cg.mount.clone()];
            all.extend(descendants(&cg.mount).unwrap_or_default());
            for d in all {
                if let Ok(id) = cgroup_id(&d) {
                    if ids.contains(&id) {
                        self.dirs.insert(id, d);
                    }
                }
            }
        }
        self.dirs.values().cloned().collect()
    }

    /// Finds and hooks OpenSSL in the processes of the targeted cgroups; returns the
    /// files hooked by this call.
    pub fn rescan(&mut self, ebpf: &mut Ebpf, cgroup_ids: &BTreeSet<u64>) -> Vec<HookedFile> {
        self.stats.scans += 1;
        let mut live = BTreeSet::new();
        for dir in self.target_dirs(cgroup_ids) {
            let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            live.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        self.pids.retain(|pid, _| live.contains(pid));
        let mut new = Vec::new();
        for pid in live {
            let ticks = self.pids.entry(pid).or_insert(MAPS_RESCAN_TICKS);
            if *ticks < MAPS_RESCAN_TICKS {
                *ticks += 1;
                continue;
            }
            *ticks = 0;
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            for m in discover::exec_mappings(&maps) {
                let host = discover::host_path(pid, &m.path);
                let Ok(meta) = std::fs::metadata(&host) else {
                    continue;
                };
                let key = (meta.dev(), meta.ino());
                if self.checked.contains_key(&key) {
                    continue;
                }
                if self.checked.len() >= MAX_CHECKED_FILES {
                    self.forget_half();
                }
                self.stats.files_checked += 1;
                let hooked = match discover::exported_symbols(&host) {
                    Ok(found) if discover::hookable(&found) => {
                        self.attach(ebpf, &host, &m.path, found)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!("TLS discovery: {e}");
                        None
                    }
                };
                if let Some(h) = &hooked {
                    tracing::info!(
                        "TLS uprobes attached to {} ({})",
                        h.path,
                        h.symbols.join(", ")
                    );
                    self.hooked.push(h.clone());
                    new.push(h.clone());
                }
                self.checked.insert(key, hooked);
            }
        }
        new
    }

    /// Forgets half of the checked files that are not hooked (hooked ones stay: their
    /// probes are attached for the whole recording).
    fn forget_half(&mut self) {
        let drop: Vec<(u64, u64)> = self
            .checked
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .take(MAX_CHECKED_FILES / 2)
            .collect();
        self.stats.files_forgotten += drop.len() as u64;
        for k in drop {
            self.checked.remove(&k);
        }
    }

    /// Attaches the entry and return programs to the symbols `found` of one file.
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        host: &std::path::Path,
        path: &str,
        found: Vec<&'static str>,
    ) -> Option<HookedFile> {
        let mut hooked = Vec::new();
        for (prog, sym) in t::ENTRY_PROGRAMS {
            if !found.contains(&sym) {
                continue;
            }
            let res = program(ebpf, prog).and_then(|p| {
                p.attach(sym, host, UProbeScope::AllProcesses)
                    .map_err(|e| RecorderError::Load(chain(&e)))
            });
            let res = res.and_then(|_| {
                program(ebpf, t::RETURN_PROGRAM).and_then(|p| {
                    p.attach(sym, host, UProbeScope::AllProcesses)
                        .map(|_| ())
                        .map_err(|e| RecorderError::Load(chain(&e)))
                })
            });
            match res {
                Ok(()) => hooked.push(sym),
                Err(e) => {
                    self.stats.attach_failures += 1;
                    tracing::warn!("TLS uprobe on {sym} in {}: {e}", host.display());
                }
            }
        }
        if hooked.is_empty() {
            return None;
        }
        Some(HookedFile {
            path: path.to_string(),
            symbols: hooked,
        })
    }

    /// `stats` rows: the kernel TLS counters (totals) and the discovery counters.
    pub fn stat_rows(&self, out: &mut Vec<Record>) {
        let ts_ns = wall_now_ns();
        for (i, name) in t::COUNTER_NAMES.iter().enumerate() {
            let value = match self.counters.get(&(i as u32), 0) {
                Ok(v) => v.iter().sum(),
                Err(e) => {
                    tracing::debug!("{}: {}", t::MAP_COUNTERS, chain(&e));
                    continue;
                }
            };
            out.push(stat(ts_ns, name, value));
        }
        let s = self.stats;
        for (name, value) in [
            ("tls_files_hooked", self.hooked.len() as u64),
            ("tls_files_checked", s.files_checked),
            ("tls_attach_failures", s.attach_failures),
            ("tls_files_forgotten", s.files_forgotten),
        ] {
            out.push(stat(ts_ns, name, value));
        }
    }
}

fn stat(ts_ns: u64, name: &str, value: u64) -> Record {
    Record::Stats(Stat {
        ts_ns,
        cpu: None,
        name: name.to_string(),
        value,
    })
}

/// The recorder's hook: with `cfg.tls`, loads the TLS programs and hooks the OpenSSL
/// copies of the targeted processes found now, appending what was hooked to the "probes
/// attached" text. TLS problems never stop a recording: they are said in that text (and
/// logged) and the recording goes on without plaintext.
pub fn start_hook(
    cfg: &crate::config::RecordConfig,
    ebpf: &mut Ebpf,
    cgroup_ids: &BTreeSet<u64>,
    attached: &mut String,
) -> Option<TlsHooks> {
    if !cfg.tls {
        attached.push_str("; TLS plaintext off (--tls off)");
        return None;
    }
    if cfg.probes == crate::config::ProbeSet::Kprobe {
        // the TLS programs find an SSL object's socket through the syscall programs'
        // per-thread state, which the kprobe set does not keep
        attached.push_str("; TLS plaintext off (needs the syscall probes, not --probes kprobe)");
        return None;
    }
    match TlsHooks::start(ebpf) {
        Ok(mut h) => {
            h.rescan(ebpf, cgroup_ids);
            attached.push_str("; ");
            attached.push_str(&h.describe());
            Some(h)
        }
        Err(e) => {
            tracing::warn!("TLS plaintext off: {e}");
            attached.push_str(&format!("; TLS plaintext off ({e})"));
            None
        }
    }
}
