//! cgroup v2 discovery: the v2 mount, cgroup ids, a pid's cgroup, a pod's directories.
//!
//! The recorder's eBPF programs filter events by cgroup v2 id (`bpf_get_current_cgroup_id`),
//! which is the inode number of the process's cgroup directory in the unified hierarchy.
//! This module turns targets into such directories and ids:
//!
//! - [`Cgroup2::detect`] finds the cgroup v2 mount in `/proc/self/mountinfo` (also on hybrid
//!   hosts where it sits at `/sys/fs/cgroup/unified`); a host with only cgroup v1 gets a
//!   [`CgroupError::NoCgroup2`] naming the v1 hierarchies it has;
//! - [`cgroup_id`] is a directory's inode, [`Cgroup2::cgroup_of_pid`] the directory of a
//!   process (the `0::` line of `/proc/PID/cgroup`), [`descendants`] a directory's subtree;
//! - [`Cgroup2::pod_cgroups`] locates a pod's directories the way the kubelet lays them out,
//!   with the systemd driver
//!   (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`)
//!   or the cgroupfs driver (`kubepods/burstable/pod<uid>/<id>`), for every QoS class, and
//!   wherever the `kubepods` tree sits below the mount (kind/k3s nodes nest it).
//!
//! It does not load eBPF or talk to Kubernetes; see [`crate::k8s`] for that.
//!
//! ```no_run
//! use podtrace_recorder::cgroups::{cgroup_id, Cgroup2};
//! let cg = Cgroup2::detect()?;
//! let dir = cg.cgroup_of_pid(std::process::id())?;
//! println!("{} has cgroup id {}", dir.display(), cgroup_id(&dir)?);
//! # Ok::<(), podtrace_recorder::cgroups::CgroupError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How deep below the mount [`Cgroup2::pod_cgroups`] looks for a pod's directory.
const MAX_POD_SEARCH_DEPTH: usize = 8;

/// Errors of cgroup discovery.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted (a cgroup v1-only host).
    #[error(
        "no cgroup v2 (unified hierarchy) mount found in {mountinfo}: this host has only cgroup v1 \
         hierarchies ({v1}); podtrace filters by cgroup v2 id, boot with systemd.unified_cgroup_hierarchy=1 \
         or mount cgroup2 (e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`)"
    )]
    NoCgroup2 {
        /// The mountinfo file that was read.
        mountinfo: PathBuf,
        /// The cgroup v1 mounts seen, comma separated (or `none`).
        v1: String,
    },
    /// Reading a file or directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `/proc/PID/cgroup` had no cgroup v2 (`0::`) line.
    #[error("process {pid} has no cgroup v2 entry (`0::` line) in /proc/{pid}/cgroup")]
    NoV2Entry {
        /// The process.
        pid: u32,
    },
    /// The process's cgroup is outside the part of the hierarchy this mount shows.
    #[error("cgroup {cgroup} of process {pid} is not visible under the cgroup v2 mount {mount} (root {root})")]
    OutsideMount {
        /// The process.
        pid: u32,
        /// Its cgroup path as the kernel reports it.
        cgroup: String,
        /// The mount point.
        mount: PathBuf,
        /// The mount's root within the hierarchy.
        root: String,
    },
    /// A pod UID that cannot be a Kubernetes UID (it would be unsafe in a path).
    #[error("invalid pod uid {0:?}: expected hex digits and dashes")]
    InvalidPodUid(String),
    /// A container id that cannot be a runtime's container id.
    #[error(
        "invalid container id {0:?}: expected hex digits, optionally prefixed by `runtime://`"
    )]
    InvalidContainerId(String),
    /// No directory of the pod exists on this node.
    #[error(
        "no cgroup of pod {uid} under {mount} (looked for kubepods*-pod{uid_underscored}.slice and pod{uid}): \
         is the pod running on this node?"
    )]
    PodNotFound {
        /// The pod's UID.
        uid: String,
        /// The same with dashes as underscores (systemd layout).
        uid_underscored: String,
        /// The cgroup v2 mount that was searched.
        mount: PathBuf,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The cgroup v2 hierarchy as mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2 {
    /// Mount point, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub mount: PathBuf,
    /// The mount's root inside the hierarchy (`/` unless in a cgroup namespace or a bind mount).
    pub root: String,
}

impl Cgroup2 {
    /// Finds the cgroup v2 mount of this process (`/proc/self/mountinfo`).
    pub fn detect() -> Result<Self, CgroupError> {
        Self::from_mountinfo_file(Path::new("/proc/self/mountinfo"))
    }

    /// Finds the cgroup v2 mount in a mountinfo file.
    pub fn from_mountinfo_file(path: &Path) -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
        parse_mountinfo(&text).map_err(|v1| CgroupError::NoCgroup2 {
            mountinfo: path.to_path_buf(),
            v1: if v1.is_empty() {
                "none".into()
            } else {
                v1.join(", ")
            },
        })
    }

    /// A hierarchy mounted at `mount` with root `/` (for tests and `--cgroup-root`).
    pub fn at(mount: impl Into<PathBuf>) -> Self {
        Self {
            mount: mount.into(),
            root: "/".into(),
        }
    }

    /// The directory of a cgroup path as the kernel names it (`/kubepods.slice/...`).
    pub fn dir_of(&self, cgroup: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rel = if root.is_empty() {
            cgroup
        } else {
            let rest = cgroup.strip_prefix(root)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        let rel = rel.trim_start_matches('/');
        Some(if rel.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(rel)
        })
    }

    /// The cgroup v2 directory of process `pid` (from `/proc/PID/cgroup`).
    pub fn cgroup_of_pid(&self, pid: u32) -> Result<PathBuf, CgroupError> {
        let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = std::fs::read_to_string(&file).map_err(io_err("reading", &file))?;
        let cgroup = parse_proc_cgroup(&text).ok_or(CgroupError::NoV2Entry { pid })?;
        self.dir_of(cgroup)
            .ok_or_else(|| CgroupError::OutsideMount {
                pid,
                cgroup: cgroup.to_string(),
                mount: self.mount.clone(),
                root: self.root.clone(),
            })
    }

    /// Locates a pod's cgroup directories on this node.
    ///
    /// Returns the pod's directory first, then the directory of each listed container
    /// found under it (and their sub-directories, where some runtimes put the process),
    /// sorted and without duplicates. Container ids may be bare or `containerd://<id>`
    /// as in `status.containerStatuses[].containerID`. With no container ids, every
    /// directory under the pod's (including the sandbox) is returned. A listed container
    /// whose directory does not exist (yet) is skipped; a pod with no directory at all is
    /// [`CgroupError::PodNotFound`].
    pub fn pod_cgroups(
        &self,
        pod_uid: &str,
        container_ids: &[impl AsRef<str>],
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let ids = container_ids
            .iter()
            .map(|c| bare_container_id(c.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let dirs = self.pod_cgroup_dirs(pod_uid)?;
        let mut rest = BTreeSet::new();
        for (id, paths) in &dirs.containers {
            if ids.is_empty() || ids.contains(id.as_str()) {
                rest.extend(paths.iter().cloned());
            }
        }
        if ids.is_empty() {
            rest.extend(dirs.other.iter().cloned());
        }
        let mut out = vec![dirs.pod_dir];
        out.extend(rest);
        Ok(out)
    }

    /// Every cgroup directory of pod `pod_uid` on this node, grouped by container id.
    pub fn pod_cgroup_dirs(&self, pod_uid: &str) -> Result<PodCgroupDirs, CgroupError> {
        let uid = validate_uid(pod_uid)?;
        let pod_dir = self.find_pod_dir(&uid)?;
        let mut containers: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let mut other = Vec::new();
        for dir in descendants(&pod_dir)? {
            let id = dir
                .strip_prefix(&pod_dir)
                .ok()
                .and_then(|rel| rel.components().next())
                .and_then(|c| c.as_os_str().to_str())
                .and_then(container_id_of_dir);
            match id {
                Some(id) => containers.entry(id.to_string()).or_default().push(dir),
                None => other.push(dir),
            }
        }
        Ok(PodCgroupDirs {
            pod_dir,
            containers,
            other,
        })
    }

    /// The directory of pod `uid` (validated), searched below the mount.
    fn find_pod_dir(&self, uid: &str) -> Result<PathBuf, CgroupError> {
        let names = pod_dir_names(uid);
        let mut stack = vec![(self.mount.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let subs = match subdirs(&dir) {
                Ok(s) => s,
                // a slice removed while we walk (a pod going away) is not an error
                Err(CgroupError::Io { source, .. })
                    if depth > 0 && source.kind() == io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            for sub in subs {
                let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if names.iter().any(|n| n == name) {
                    return Ok(sub);
                }
                // only descend into kubelet-ish or system slices: pods never hide in containers
                if depth + 1 < MAX_POD_SEARCH_DEPTH && may_contain_pods(name) {
                    stack.push((sub, depth + 1));
                }
            }
        }
        Err(CgroupError::PodNotFound {
            uid: uid.to_string(),
            uid_underscored: uid.replace('-', "_"),
            mount: self.mount.clone(),
        })
    }
}

/// A pod's cgroup directories (see [`Cgroup2::pod_cgroup_dirs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroupDirs {
    /// The pod's directory (`...-pod<uid>.slice` or `pod<uid>`).
    pub pod_dir: PathBuf,
    /// Container id → its directory and the directories below it, sorted.
    pub containers: BTreeMap<String, Vec<PathBuf>>,
    /// Directories under the pod's that belong to no container id.
    pub other: Vec<PathBuf>,
}

/// The directory names a kubelet gives pod `uid`'s cgroup, in either driver and any QoS class.
pub fn pod_dir_names(uid: &str) -> Vec<String> {
    let u = uid.replace('-', "_");
    vec![
        format!("kubepods-pod{u}.slice"),
        format!("kubepods-burstable-pod{u}.slice"),
        format!("kubepods-besteffort-pod{u}.slice"),
        format!("pod{uid}"),
    ]
}

/// Whether a directory may hold pod directories somewhere below it.
fn may_contain_pods(name: &str) -> bool {
    name.contains("kubepods")
        || name.ends_with(".slice")
        || matches!(name, "burstable" | "besteffort" | "kubelet" | "kubelet.slice")
        // docker-in-docker / kind nodes: a node container's cgroup with kubepods inside
        || (!name.contains('.') && !name.starts_with("pod") && name.len() == 64 && is_hex(name))
}

/// The container id in a container's cgroup directory name, if it is one:
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` (systemd driver),
/// or `<id>` (cgroupfs driver). `crio-conmon-<id>.scope` (the monitor) is not a container.
pub fn container_id_of_dir(name: &str) -> Option<&str> {
    let id = match name.strip_suffix(".scope") {
        Some(unit) => {
            if unit.contains("-conmon-") {
                return None;
            }
            unit.rsplit('-').next()?
        }
        None => name,
    };
    (id.len() >= 12 && is_hex(id)).then_some(id)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_uid(uid: &str) -> Result<String, CgroupError> {
    let ok = !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(uid.to_ascii_lowercase())
    } else {
        Err(CgroupError::InvalidPodUid(uid.to_string()))
    }
}

/// Strips a `runtime://` prefix from a container id and checks the rest is hex.
pub fn bare_container_id(id: &str) -> Result<&str, CgroupError> {
    let bare = id.split_once("://").map_or(id, |(_, rest)| rest);
    if is_hex(bare) {
        Ok(bare)
    } else {
        Err(CgroupError::InvalidContainerId(id.to_string()))
    }
}

/// Parses mountinfo text: the cgroup2 mount, or the list of cgroup v1 mount points.
///
/// With several cgroup2 mounts (a container that sees its own cgroup namespace at
/// `/sys/fs/cgroup` plus the host's tree bind-mounted elsewhere), the first one showing the
/// whole hierarchy (root `/`) wins, else the first one.
pub fn parse_mountinfo(text: &str) -> Result<Cgroup2, Vec<String>> {
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 {
            continue;
        }
        match fields.get(sep + 1) {
            Some(&"cgroup2") => v2.push(Cgroup2 {
                mount: PathBuf::from(unescape_mountinfo(fields[4])),
                root: unescape_mountinfo(fields[3]),
            }),
            Some(&"cgroup") => v1.push(unescape_mountinfo(fields[4])),
            _ => {}
        }
    }
    match v2.iter().position(|m| m.root == "/") {
        Some(i) => Ok(v2.swap_remove(i)),
        None => v2.into_iter().next().ok_or(v1),
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 path in `/proc/PID/cgroup` text (the `0::` line), e.g. `/kubepods.slice/...`.
pub fn parse_proc_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup v2 id of a cgroup directory: its inode number (what `bpf_get_current_cgroup_id` returns).
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    let meta = std::fs::metadata(path).map_err(io_err("stat", path))?;
    if !meta.is_dir() {
        return Err(CgroupError::Io {
            what: "cgroup id of",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    Ok(meta.ino())
}

/// Every directory below `path` (not `path` itself), depth first, sorted per level.
///
/// Directories that vanish during the walk (a container exiting) are skipped.
pub fn descendants(path: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let subs = match subdirs(&dir) {
            Ok(s) => s,
            Err(CgroupError::Io { source, .. })
                if !first && source.kind() == io::ErrorKind::NotFound =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        first = false;
        for sub in subs.into_iter().rev() {
            stack.push(sub.clone());
            out.push(sub);
        }
    }
    out.sort();
    Ok(out)
}

/// Immediate sub-directories (not symlinks), sorted.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_hybrid_finds_unified() {
        let cg = parse_mountinfo(HYBRID).expect("cgroup2 mount");
        assert_eq!(
            cg,
            Cgroup2 {
                mount: "/sys/fs/cgroup/unified".into(),
                root: "/".into()
            }
        );
    }

    #[test]
    fn mountinfo_v2_with_optional_fields_and_escapes() {
        let text = "29 23 0:26 /kube\\040x /sys/fs/my\\040cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw\n";
        let cg = parse_mountinfo(text).expect("cgroup2 mount");
        assert_eq!(cg.mount, PathBuf::from("/sys/fs/my cgroup"));
        assert_eq!(cg.root, "/kube x");
    }

    #[test]
    fn mountinfo_v1_only_is_an_error_naming_the_hierarchies() {
        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        let v1 = parse_mountinfo(&v1_only).expect_err("no cgroup2");
        assert_eq!(v1, vec!["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/systemd"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mountinfo");
        std::fs::write(&file, v1_only).expect("write");
        let err = Cgroup2::from_mountinfo_file(&file)
            .expect_err("v1 only")
            .to_string();
        assert!(err.contains("only cgroup v1"), "{err}");
        assert!(
            err.contains("/sys/fs/cgroup/cpu, /sys/fs/cgroup/systemd"),
            "{err}"
        );
    }

    #[test]
    fn mountinfo_prefers_the_whole_hierarchy() {
        let text = "\
50 40 0:30 /kubepods.slice/x.scope /sys/fs/cgroup ro - cgroup2 cgroup rw
51 40 0:30 / /host/sys/fs/cgroup rw - cgroup2 cgroup rw
";
        let cg = parse_mountinfo(text).expect("cgroup2 mount");
        assert_eq!(
            cg,
            Cgroup2 {
                mount: "/host/sys/fs/cgroup".into(),
                root: "/".into()
            }
        );
        let only_ns = parse_mountinfo(text.lines().next().expect("line")).expect("cgroup2 mount");
        assert_eq!(only_ns.root, "/kubepods.slice/x.scope");
    }

    #[test]
    fn proc_cgroup_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/kubepods.slice/a.scope\n";
        assert_eq!(parse_proc_cgroup(text), Some("/kubepods.slice/a.scope"));
        assert_eq!(parse_proc_cgroup("1:cpu:/\n"), None);
    }

    #[test]
    fn dir_of_respects_the_mount_root() {
        let cg = Cgroup2 {
            mount: "/sys/fs/cgroup".into(),
            root: "/kubepods".into(),
        };
        assert_eq!(
            cg.dir_of("/kubepods/pod1/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/pod1/abc"))
        );
        assert_eq!(
            cg.dir_of("/kubepods"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cg.dir_of("/kubepodsX/y"), None);
        assert_eq!(cg.dir_of("/system.slice"), None);
        let root = Cgroup2::at("/sys/fs/cgroup/unified");
        assert_eq!(
            root.dir_of("/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            root.dir_of("/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
    }

    #[test]
    fn container_dir_names() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            container_id_of_dir(&format!("cri-containerd-{id}.scope")),
            Some(id)
        );
        assert_eq!(container_id_of_dir(&format!("crio-{id}.scope")), Some(id));
        assert_eq!(container_id_of_dir(&format!("docker-{id}.scope")), Some(id));
        assert_eq!(container_id_of_dir(id), Some(id));
        assert_eq!(
            container_id_of_dir(&format!("crio-conmon-{id}.scope")),
            None
        );
        assert_eq!(container_id_of_dir("init.scope"), None);
        assert_eq!(
            bare_container_id(&format!("containerd://{id}")).ok(),
            Some(id)
        );
        assert!(bare_container_id("containerd://../../etc").is_err());
    }

    /// A kubelet-like tree in a temp directory: two pods (systemd, cgroupfs), a sandbox.
    struct Tree {
        dir: tempfile::TempDir,
    }

    const UID_A: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    const UID_B: &str = "6fa459ea-ee8a-3ca4-894e-db77e160355e";
    const C1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const C2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const SANDBOX: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let ua = UID_A.replace('-', "_");
            for p in [
                "system.slice/containerd.service".to_string(),
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ua}.slice/cri-containerd-{C1}.scope"),
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ua}.slice/cri-containerd-{C2}.scope/container"),
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ua}.slice/cri-containerd-{SANDBOX}.scope"),
                format!("kubelet.slice/kubelet-kubepods.slice/kubepods/besteffort/pod{UID_B}/{C1}"),
            ] {
                std::fs::create_dir_all(dir.path().join(p)).expect("mkdir");
            }
            std::fs::write(dir.path().join("kubepods.slice/cgroup.procs"), "").expect("write file");
            Tree { dir }
        }
        fn cg(&self) -> Cgroup2 {
            Cgroup2::at(self.dir.path())
        }
        fn rel(&self, paths: &[PathBuf]) -> Vec<String> {
            paths
                .iter()
                .map(|p| {
                    p.strip_prefix(self.dir.path())
                        .expect("under tree")
                        .display()
                        .to_string()
                })
                .collect()
        }
    }

    #[test]
    fn pod_cgroups_systemd_layout_selects_listed_containers() {
        let t = Tree::new();
        let ua = UID_A.replace('-', "_");
        let pod =
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ua}.slice");
        let got = t
            .cg()
            .pod_cgroups(UID_A, &[format!("containerd://{C1}"), C2.to_string()])
            .expect("found");
        assert_eq!(
            t.rel(&got),
            vec![
                pod.clone(),
                format!("{pod}/cri-containerd-{C1}.scope"),
                format!("{pod}/cri-containerd-{C2}.scope"),
                format!("{pod}/cri-containerd-{C2}.scope/container"),
            ]
        );
        // no ids: the whole pod including the sandbox
        let all = t.cg().pod_cgroups(UID_A, &[] as &[&str]).expect("found");
        assert_eq!(all.len(), 5);
        assert!(t.rel(&all).iter().any(|p| p.contains(SANDBOX)));
    }

    #[test]
    fn pod_cgroups_cgroupfs_layout_nested_under_kubelet_slice() {
        let t = Tree::new();
        let got = t.cg().pod_cgroups(UID_B, &[C1]).expect("found");
        assert_eq!(
            t.rel(&got),
            vec![
                format!("kubelet.slice/kubelet-kubepods.slice/kubepods/besteffort/pod{UID_B}"),
                format!("kubelet.slice/kubelet-kubepods.slice/kubepods/besteffort/pod{UID_B}/{C1}"),
            ]
        );
        // a container that is not (yet) there is skipped, not an error
        let only_pod = t.cg().pod_cgroups(UID_B, &[C2]).expect("found");
        assert_eq!(only_pod.len(), 1);
    }

    #[test]
    fn pod_cgroups_errors() {
        let t = Tree::new();
        let err = t
            .cg()
            .pod_cgroups("00000000-0000-0000-0000-000000000000", &[C1])
            .expect_err("absent");
        assert!(matches!(err, CgroupError::PodNotFound { .. }), "{err}");
        assert!(err.to_string().contains("00000000_0000"), "{err}");
        let err = t.cg().pod_cgroups("../../etc", &[C1]).expect_err("bad uid");
        assert!(matches!(err, CgroupError::InvalidPodUid(_)), "{err}");
    }

    #[test]
    fn descendants_and_ids() {
        let t = Tree::new();
        let d = descendants(&t.dir.path().join("kubelet.slice")).expect("walk");
        assert_eq!(d.len(), 5);
        assert!(d.windows(2).all(|w| w[0] < w[1]), "sorted");
        let leaf = &d[4];
        assert_eq!(
            cgroup_id(leaf).expect("id"),
            std::fs::metadata(leaf).expect("stat").ino()
        );
        assert!(cgroup_id(&t.dir.path().join("kubepods.slice/cgroup.procs")).is_err());
        assert!(descendants(&t.dir.path().join("missing")).is_err());
    }
}
