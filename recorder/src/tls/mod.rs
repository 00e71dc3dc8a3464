//! TLS plaintext: attaching the uprobes of `bpf/tls.bpf.h` to the OpenSSL 3 copies the
//! targeted processes use.
//!
//! [`TlsHooks::start`] loads the programs (4 entry uprobes, one return program); then
//! [`TlsHooks::rescan`] (called at start and every [`SCAN_INTERVAL`] by the recorder) lists
//! the processes of the targeted cgroups (`cgroup.procs` of each targeted cgroup
//! directory) and reads the maps of the NEW ones (`/proc/PID/maps`); each executable file
//! mapping is checked once per file (device + inode) for exported `SSL_write`/`SSL_read`
//! (Debian's `libssl.so.3`, binaries that link OpenSSL statically and export it such as
//! Node.js), through `/proc/PID/root/...` so container file systems work.
//!
//! Two attach scopes ([`TlsAttach`], `--tls-attach`):
//! - `file` (default): once per FILE, for every process that maps it. A targeted process
//!   started after the file was hooked is covered from its first instruction (a one-shot
//!   `curl`); every other process of the node that maps the same file takes the uprobe
//!   trap on each SSL call and is dropped by the programs' cgroup filter.
//! - `process`: per targeted PROCESS (perf uprobe events scoped to its pid): the kernel puts
//!   the breakpoints only in that process's address space, so untargeted processes mapping
//!   the same library pay nothing; a process is hooked within one scan of appearing (its
//!   SSL calls before that are not captured). A process's links are detached when it
//!   leaves the targeted cgroups (or exits); at most [`MAX_HOOKED_PROCESSES`] are hooked at
//!   once.
//!
//! A known process without OpenSSL has its maps read again every
//! [`MAPS_RESCAN`] (a lazy `import ssl`); a hooked process is not read again.
//! The programs' cgroup filter (the same as the socket programs') stays as a second check.

pub mod discover;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray};
use aya::programs::uprobe::{UProbeLinkId, UProbeScope};
use aya::programs::UProbe;
use aya::Ebpf;
use podtrace_format::model::{Record, Stat};
use podtrace_recorder_ebpf::tls as t;

use crate::cgroups::{cgroup_id, descendants, Cgroup2};
use crate::clock::wall_now_ns;
use crate::error::{RecorderError, Result};
use crate::probes::chain;

/// How often the recorder calls [`TlsHooks::rescan`] with [`TlsAttach::Process`]: a new
/// targeted process is hooked within this time (plus its maps read and attach), so its
/// first SSL calls are missed only when it makes them sooner. A scan of unchanged cgroups
/// reads only their `cgroup.procs`.
pub const SCAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(40);
/// How often with [`TlsAttach::File`]: a file hooked once covers every later process that
/// maps it, so only a new file waits for a scan.
pub const FILE_SCAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// A known process with no OpenSSL hooked yet has its maps read again after this long
/// (new processes at once; hooked processes never again).
pub const MAPS_RESCAN: std::time::Duration = std::time::Duration::from_secs(2);
/// At most this many files are remembered as checked (hooked or not); beyond it the
/// oldest half is forgotten (counted in `tls_files_forgotten`).
pub const MAX_CHECKED_FILES: usize = 65_536;
/// At most this many processes have probes attached at once; further targeted processes
/// are not hooked (counted in `tls_processes_over_bound`, warned once).
pub const MAX_HOOKED_PROCESSES: usize = 2_048;
/// A targeted cgroup id whose directory is unknown makes the cgroup tree be walked again
/// at most this often.
const REWALK: Duration = Duration::from_secs(4);

/// A hooked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookedFile {
    /// Path as the process it was first found in sees it.
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
    /// Probes that could not be attached (see the log).
    pub attach_failures: u64,
    /// Checked-file entries forgotten at [`MAX_CHECKED_FILES`].
    pub files_forgotten: u64,
    /// Processes that got probes (over the recording).
    pub processes_hooked: u64,
    /// Processes whose probes were detached because they left the targeted cgroups.
    pub processes_detached: u64,
    /// Targeted processes not hooked because [`MAX_HOOKED_PROCESSES`] were hooked.
    pub processes_over_bound: u64,
}

/// Where the TLS uprobes are attached (`--tls-attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsAttach {
    /// Once per file, for every process that maps it (untargeted processes take the trap
    /// and are filtered out by cgroup).
    #[default]
    File,
    /// Per targeted process: untargeted processes pay nothing; a process is hooked within
    /// one [`SCAN_INTERVAL`] of appearing.
    Process,
}

/// A checked file that has the symbols.
#[derive(Debug, Clone)]
struct SslFile {
    /// Path as the process it was first found in sees it.
    path: String,
    /// The symbols and their uprobe offsets.
    symbols: Vec<(&'static str, u64)>,
    /// Whether it has been hooked in some process (reported once).
    reported: bool,
    /// [`TlsAttach::File`]: its probes are attached for every process.
    all_processes: bool,
}

/// A targeted process.
#[derive(Debug, Default)]
struct Proc {
    /// Scans since its maps were last read.
    ticks: u32,
    /// Files (dev, inode) hooked in it.
    files: BTreeSet<(u64, u64)>,
    /// Its probe links (program name, link).
    links: Vec<(&'static str, UProbeLinkId)>,
    /// Counted in `processes_over_bound` already.
    over_bound: bool,
    /// [`TlsAttach::File`]: every OpenSSL file it maps is hooked (its maps are not read
    /// again).
    covered: bool,
}

/// The TLS programs and the processes they are attached to.
pub struct TlsHooks {
    mode: TlsAttach,
    counters: PerCpuArray<MapData, u64>,
    /// (dev, inode) of files checked: Some = has the symbols.
    checked: HashMap<(u64, u64), Option<SslFile>>,
    /// Files hooked (in some process) in hook order.
    hooked: Vec<HookedFile>,
    /// Known targeted processes.
    procs: BTreeMap<u32, Proc>,
    /// Processes with probes attached now.
    attached_procs: usize,
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
    pub fn start(ebpf: &mut Ebpf, mode: TlsAttach) -> Result<TlsHooks> {
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
            mode,
            counters,
            checked: HashMap::new(),
            hooked: Vec::new(),
            procs: BTreeMap::new(),
            attached_procs: 0,
            cg: Cgroup2::detect().ok(),
            dirs: HashMap::new(),
            last_walk: None,
            stats: DiscoverCounters::default(),
        })
    }

    /// How often the recorder should call [`TlsHooks::rescan`] ([`SCAN_INTERVAL`] or
    /// [`FILE_SCAN_INTERVAL`]).
    pub fn scan_interval(&self) -> std::time::Duration {
        match self.mode {
            TlsAttach::Process => SCAN_INTERVAL,
            TlsAttach::File => FILE_SCAN_INTERVAL,
        }
    }

    /// Scans between two reads of the maps of a process without OpenSSL ([`MAPS_RESCAN`]).
    fn maps_rescan_ticks(&self) -> u32 {
        let per = self.scan_interval().as_millis().max(1);
        u32::try_from(MAPS_RESCAN.as_millis() / per).unwrap_or(u32::MAX)
    }

    /// The files hooked so far (in at least one process).
    pub fn hooked(&self) -> &[HookedFile] {
        &self.hooked
    }

    /// Processes with probes attached now.
    pub fn hooked_processes(&self) -> usize {
        self.attached_procs
    }

    /// One line for people: which files are hooked.
    pub fn describe(&self) -> String {
        if self.hooked.is_empty() {
            return "TLS uprobes: no OpenSSL found yet in the targeted processes".into();
        }
        let files: Vec<&str> = self.hooked.iter().map(|h| h.path.as_str()).collect();
        match self.mode {
            TlsAttach::File => format!("TLS uprobes on {}", files.join(", ")),
            TlsAttach::Process => format!(
                "TLS uprobes on {} (in {} targeted process(es))",
                files.join(", "),
                self.attached_procs
            ),
        }
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

    /// Finds OpenSSL in the processes of the targeted cgroups and attaches the probes to
    /// each such process (the kernel then puts the breakpoints in that process only);
    /// detaches the probes of processes that left. Returns the files hooked for the first
    /// time by this call.
    pub fn rescan(&mut self, ebpf: &mut Ebpf, cgroup_ids: &BTreeSet<u64>) -> Vec<HookedFile> {
        self.stats.scans += 1;
        let mut live = BTreeSet::new();
        for dir in self.target_dirs(cgroup_ids) {
            let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            live.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        let gone: Vec<u32> = self
            .procs
            .keys()
            .filter(|p| !live.contains(p))
            .copied()
            .collect();
        for pid in gone {
            if let Some(p) = self.procs.remove(&pid) {
                self.detach(ebpf, p);
            }
        }
        let mut new = Vec::new();
        for pid in live {
            let rescan_ticks = self.maps_rescan_ticks();
            let proc = self.procs.entry(pid).or_insert(Proc {
                ticks: rescan_ticks,
                ..Proc::default()
            });
            if !proc.links.is_empty() || proc.covered {
                continue;
            }
            if proc.ticks < rescan_ticks {
                proc.ticks += 1;
                continue;
            }
            proc.ticks = 0;
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            let mut covered = false;
            for m in discover::exec_mappings(&maps) {
                let host = discover::host_path(pid, &m.path);
                let Ok(meta) = std::fs::metadata(&host) else {
                    continue;
                };
                let key = (meta.dev(), meta.ino());
                if !self.checked.contains_key(&key) {
                    if self.checked.len() >= MAX_CHECKED_FILES {
                        self.forget_half();
                    }
                    self.stats.files_checked += 1;
                    let file = match discover::exported_symbols(&host) {
                        Ok(found) if discover::hookable(&found) => Some(SslFile {
                            path: m.path.clone(),
                            symbols: found,
                            reported: false,
                            all_processes: false,
                        }),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::debug!("TLS discovery: {e}");
                            None
                        }
                    };
                    self.checked.insert(key, file);
                }
                let Some(Some(file)) = self.checked.get(&key) else {
                    continue;
                };
                if file.all_processes {
                    covered = true; // hooked for every process already
                    continue;
                }
                let file = file.clone();
                let hooked = match self.mode {
                    TlsAttach::Process => self.attach(ebpf, pid, key, &host, &file),
                    TlsAttach::File => {
                        let h = self.attach_file(ebpf, &host, &file);
                        if let Some(Some(f)) = self.checked.get_mut(&key) {
                            f.all_processes = h.is_some();
                        }
                        covered |= h.is_some();
                        h
                    }
                };
                if let Some(h) = hooked {
                    if let Some(Some(f)) = self.checked.get_mut(&key) {
                        f.reported = true;
                    }
                    tracing::info!(
                        "TLS uprobes attached to {} ({})",
                        h.path,
                        h.symbols.join(", ")
                    );
                    self.hooked.push(h.clone());
                    new.push(h);
                }
            }
            if covered {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.covered = true;
                }
            }
        }
        new
    }

    /// [`TlsAttach::File`]: attaches the entry and return programs to the symbols of
    /// `file` for every process that maps it; returns the file when something attached.
    fn attach_file(
        &mut self,
        ebpf: &mut Ebpf,
        host: &std::path::Path,
        file: &SslFile,
    ) -> Option<HookedFile> {
        // links of the all-processes scope live as long as the programs
        let (_, hooked) = self.attach_symbols(ebpf, host, file, UProbeScope::AllProcesses);
        (!hooked.is_empty()).then(|| HookedFile {
            path: file.path.clone(),
            symbols: hooked,
        })
    }

    /// Attaches the entry and the return program to each symbol of `file` in `scope`;
    /// returns the links made and the symbols whose pair attached (failures counted in
    /// `tls_attach_failures`).
    fn attach_symbols(
        &mut self,
        ebpf: &mut Ebpf,
        host: &std::path::Path,
        file: &SslFile,
        scope: UProbeScope,
    ) -> (Vec<(&'static str, UProbeLinkId)>, Vec<&'static str>) {
        let mut links = Vec::new();
        let mut hooked = Vec::new();
        for (prog, sym) in t::ENTRY_PROGRAMS {
            let Some((_, offset)) = file.symbols.iter().find(|(s, _)| *s == sym) else {
                continue;
            };
            let entry = program(ebpf, prog).and_then(|p| {
                p.attach(*offset, host, scope)
                    .map_err(|e| RecorderError::Load(chain(&e)))
            });
            let ret = entry.and_then(|l| {
                links.push((prog, l));
                program(ebpf, t::RETURN_PROGRAM).and_then(|p| {
                    p.attach(*offset, host, scope)
                        .map_err(|e| RecorderError::Load(chain(&e)))
                })
            });
            match ret {
                Ok(l) => {
                    links.push((t::RETURN_PROGRAM, l));
                    hooked.push(sym);
                }
                Err(e) => {
                    self.stats.attach_failures += 1;
                    // once per file: said; per process (may repeat for many): logged at -vv
                    if matches!(scope, UProbeScope::AllProcesses) {
                        tracing::warn!("TLS uprobe on {sym} in {}: {e}", host.display());
                    } else {
                        tracing::debug!(
                            "TLS uprobe on {sym} in {} ({scope:?}): {e}",
                            host.display()
                        );
                    }
                }
            }
        }
        (links, hooked)
    }

    /// Detaches the probes of a process that is gone.
    fn detach(&mut self, ebpf: &mut Ebpf, p: Proc) {
        if p.links.is_empty() {
            return;
        }
        self.attached_procs -= 1;
        self.stats.processes_detached += 1;
        for (prog, link) in p.links {
            if let Err(e) = program(ebpf, prog)
                .and_then(|pr| pr.detach(link).map_err(|e| RecorderError::Load(chain(&e))))
            {
                tracing::debug!("TLS uprobe detach ({prog}): {e}");
            }
        }
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

    /// Attaches the entry and return programs to the symbols of `file` for process `pid`
    /// only; returns the file when this is its first hook (to be reported).
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        key: (u64, u64),
        host: &std::path::Path,
        file: &SslFile,
    ) -> Option<HookedFile> {
        let nz = NonZeroU32::new(pid)?;
        let first_of_proc = self.procs.get(&pid).is_none_or(|p| p.links.is_empty());
        if first_of_proc && self.attached_procs >= MAX_HOOKED_PROCESSES {
            let proc = self.procs.entry(pid).or_default();
            if !proc.over_bound {
                proc.over_bound = true;
                if self.stats.processes_over_bound == 0 {
                    tracing::warn!(
                        "TLS: {MAX_HOOKED_PROCESSES} processes hooked; further targeted processes get no TLS uprobes (counted in tls_processes_over_bound)"
                    );
                }
                self.stats.processes_over_bound += 1;
            }
            return None;
        }
        let (links, hooked) = self.attach_symbols(ebpf, host, file, UProbeScope::OneProcess(nz));
        let proc = self.procs.entry(pid).or_default();
        if links.is_empty() {
            return None;
        }
        if proc.links.is_empty() {
            self.attached_procs += 1;
            self.stats.processes_hooked += 1;
        }
        proc.links.extend(links);
        proc.files.insert(key);
        if hooked.is_empty() || file.reported {
            return None;
        }
        Some(HookedFile {
            path: file.path.clone(),
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
            ("tls_processes_hooked_now", self.attached_procs as u64),
            ("tls_processes_hooked", s.processes_hooked),
            ("tls_processes_detached", s.processes_detached),
            ("tls_processes_over_bound", s.processes_over_bound),
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
    match TlsHooks::start(ebpf, cfg.tls_attach) {
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
