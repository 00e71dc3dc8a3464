//! The cgroup filter: which cgroup ids the kernel side records.
//!
//! [`Filter`] owns the `pt_cgroups` map. Targets come from three places:
//! - fixed ids (`RecordConfig::cgroup_ids`) and the cgroups of `--pid` processes;
//! - `--cgroup PATH` roots, each covering every cgroup below it: [`Filter::rescan`] walks
//!   them (the recorder calls it periodically) and adds new descendants, removing ids of
//!   directories that disappeared (a cgroup inode number can be reused later);
//! - ids added at run time through the recorder handle (e.g. new containers of a pod).

use std::collections::BTreeSet;
use std::path::PathBuf;

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use podtrace_recorder_ebpf::names;

use crate::cgroups::{cgroup_id, descendants, Cgroup2};
use crate::config::RecordConfig;
use crate::error::{RecorderError, Result};
use crate::probes::chain;

/// Resolved targets: fixed ids and directory roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Ids recorded for the whole recording.
    pub fixed: BTreeSet<u64>,
    /// Directories recorded with all their descendants.
    pub roots: Vec<PathBuf>,
}

impl Targets {
    /// Resolves a configuration's targets (cgroup v2 mount, pid cgroups, path checks).
    pub fn resolve(cfg: &RecordConfig) -> Result<Targets> {
        let mut t = Targets {
            fixed: cfg.cgroup_ids.iter().copied().collect(),
            roots: Vec::new(),
        };
        if cfg.pids.is_empty() && cfg.cgroup_paths.is_empty() {
            return Ok(t);
        }
        let cg = Cgroup2::detect()?;
        for pid in &cfg.pids {
            let dir = cg.cgroup_of_pid(*pid)?;
            t.fixed.insert(cgroup_id(&dir)?);
        }
        for p in &cfg.cgroup_paths {
            let canon = std::fs::canonicalize(p).map_err(|e| RecorderError::Io {
                what: format!("cgroup path {}", p.display()),
                source: e,
            })?;
            let mount = std::fs::canonicalize(&cg.mount).unwrap_or_else(|_| cg.mount.clone());
            if !canon.starts_with(&mount) || !canon.join("cgroup.procs").exists() {
                return Err(RecorderError::NotACgroup {
                    path: p.clone(),
                    mount: cg.mount.clone(),
                });
            }
            t.roots.push(canon);
        }
        Ok(t)
    }

    /// Every id the targets cover right now.
    pub fn current_ids(&self) -> BTreeSet<u64> {
        let mut ids = self.fixed.clone();
        for root in &self.roots {
            if let Ok(id) = cgroup_id(root) {
                ids.insert(id);
            }
            if let Ok(subs) = descendants(root) {
                ids.extend(subs.iter().filter_map(|d| cgroup_id(d).ok()));
            }
        }
        ids
    }
}

/// The kernel filter map plus the bookkeeping of where each id came from.
pub struct Filter {
    map: BpfHashMap<MapData, u64, u8>,
    slots: Array<MapData, u64>,
    /// The ids in `map`, mirrored to keep `slots` right.
    in_map: BTreeSet<u64>,
    targets: Targets,
    scanned: BTreeSet<u64>,
    manual: BTreeSet<u64>,
    excluded: BTreeSet<u64>,
}

impl Filter {
    /// Wraps the map; call [`Filter::rescan`] to fill it.
    pub fn new(
        map: BpfHashMap<MapData, u64, u8>,
        slots: Array<MapData, u64>,
        targets: Targets,
    ) -> Self {
        Filter {
            map,
            slots,
            in_map: BTreeSet::new(),
            targets,
            scanned: BTreeSet::new(),
            manual: BTreeSet::new(),
            excluded: BTreeSet::new(),
        }
    }

    fn put(&mut self, id: u64) -> Result<()> {
        self.map
            .insert(id, 1u8, 0)
            .map_err(|e| RecorderError::Map {
                map: names::MAP_CGROUPS,
                detail: chain(&e),
            })?;
        self.in_map.insert(id);
        self.set_slot(id)
    }

    fn del(&mut self, id: u64) {
        self.in_map.remove(&id);
        // The slot first (then the hash map): a stale slot only costs a hash lookup.
        if let Err(e) = self.set_slot(id) {
            tracing::warn!("cgroup filter slot: {e}");
        }
        // Removing an absent key is not an error worth reporting.
        let _ = self.map.remove(&id);
    }

    /// Rewrites the direct-mapped slot of `id`: 0 when no targeted id maps there, the id
    /// when one does, `u64::MAX` (ask the hash map) when several do.
    fn set_slot(&mut self, id: u64) -> Result<()> {
        let slot = id % names::CG_SLOTS;
        let mut same = self.in_map.iter().filter(|i| *i % names::CG_SLOTS == slot);
        let value = match (same.next(), same.next()) {
            (None, _) => 0,
            (Some(only), None) => *only,
            (Some(_), Some(_)) => u64::MAX,
        };
        self.slots
            .set(slot as u32, value, 0)
            .map_err(|e| RecorderError::Map {
                map: names::MAP_CG_SLOTS,
                detail: chain(&e),
            })
    }

    /// Brings the map in line with the targets; returns (added, removed) counts.
    pub fn rescan(&mut self) -> Result<(usize, usize)> {
        let mut now = self.targets.current_ids();
        now.retain(|id| !self.excluded.contains(id));
        let added: Vec<u64> = now.difference(&self.scanned).copied().collect();
        let removed: Vec<u64> = self.scanned.difference(&now).copied().collect();
        for id in &added {
            self.put(*id)?;
        }
        for id in &removed {
            if !self.manual.contains(id) {
                self.del(*id);
            }
        }
        self.scanned = now;
        Ok((added.len(), removed.len()))
    }

    /// Adds a cgroup directory (and every cgroup below it, now and on later rescans),
    /// e.g. a new container of a targeted pod; returns how many ids were added now.
    pub fn add_root(&mut self, dir: &std::path::Path) -> Result<usize> {
        let canon = std::fs::canonicalize(dir).map_err(|e| RecorderError::Io {
            what: format!("cgroup path {}", dir.display()),
            source: e,
        })?;
        if !canon.join("cgroup.procs").exists() {
            let mount = Cgroup2::detect().map(|c| c.mount).unwrap_or_default();
            return Err(RecorderError::NotACgroup {
                path: dir.to_path_buf(),
                mount,
            });
        }
        if let Ok(id) = cgroup_id(&canon) {
            self.excluded.remove(&id);
        }
        if !self.targets.roots.contains(&canon) {
            self.targets.roots.push(canon);
        }
        Ok(self.rescan()?.0)
    }

    /// Adds an id for the rest of the recording.
    pub fn add(&mut self, id: u64) -> Result<()> {
        self.excluded.remove(&id);
        self.put(id)?;
        self.manual.insert(id);
        Ok(())
    }

    /// Removes an id, whatever added it, for the rest of the recording (rescans do not
    /// bring it back; [`Filter::add`] does).
    pub fn remove(&mut self, id: u64) {
        self.manual.remove(&id);
        self.scanned.remove(&id);
        self.excluded.insert(id);
        self.del(id);
    }

    /// Ids currently in the map.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.scanned.union(&self.manual).copied().collect()
    }

    /// Stops recording every cgroup at once (the recording is ending): the programs see no
    /// target from here on. Detaching the probes one by one takes a while (a per-syscall
    /// tracepoint link each), and while some were detached and others not, exchanges would
    /// be recorded half (requests without their responses); emptying the map first makes
    /// the end of the recording one instant for every syscall. Rescans add nothing back.
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            self.excluded.insert(id);
            self.del(id);
        }
        self.scanned.clear();
        self.manual.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_ids_cover_roots_descendants_and_fixed_ids() {
        // any directory tree has the same shape as a cgroup tree for this purpose
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = a.join("b");
        std::fs::create_dir_all(&b).expect("mkdir");
        let t = Targets {
            fixed: [7u64].into_iter().collect(),
            roots: vec![dir.path().to_path_buf()],
        };
        let ids = t.current_ids();
        for p in [dir.path(), &a, &b] {
            assert!(ids.contains(&cgroup_id(p).expect("id")), "{}", p.display());
        }
        assert!(ids.contains(&7));
        assert_eq!(ids.len(), 4);
        std::fs::remove_dir(&b).expect("rmdir");
        assert_eq!(t.current_ids().len(), 3);
    }
}
