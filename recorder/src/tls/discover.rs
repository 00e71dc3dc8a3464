//! Finding the files that carry OpenSSL's API in a process: `/proc/PID/maps` lines and the
//! ELF dynamic symbol table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};

/// The symbols the TLS programs hook; a file is hooked when it defines (exports) at least
/// `SSL_write` and `SSL_read`.
pub const SYMBOLS: [&str; 4] = ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"];

/// One executable file mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Path as the process sees it (inside its mount namespace).
    pub path: String,
}

/// The distinct executable file mappings (`r-xp` ... `/path`) of a `/proc/PID/maps` text.
/// Deleted files, anonymous and special mappings (`[vdso]`) are left out.
pub fn exec_mappings(maps: &str) -> Vec<Mapping> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(_range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if perms.as_bytes().get(2) != Some(&b'x') || inode == "0" {
            continue;
        }
        let rest: Vec<&str> = f.collect();
        if rest.is_empty() {
            continue;
        }
        let path = rest.join(" ");
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        if seen.insert(path.clone()) {
            out.push(Mapping { path });
        }
    }
    out
}

/// The path of a process's file from the recorder's mount namespace.
pub fn host_path(pid: u32, path: &str) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}

/// Which of [`SYMBOLS`] the ELF file at `path` defines in its dynamic symbol table
/// (undefined imports do not count), each with its uprobe offset (the symbol's file
/// offset, translated through its section as aya does for a symbol name). Only the headers
/// and symbol tables are read: the offsets are computed once per file, and each process's
/// attach then needs no ELF parse.
pub fn exported_symbols(path: &Path) -> Result<Vec<(&'static str, u64)>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).map_err(|e| format!("ELF {}: {e}", path.display()))?;
    let translate = matches!(
        obj.kind(),
        object::ObjectKind::Dynamic | object::ObjectKind::Executable
    );
    let mut found: Vec<(&'static str, u64)> = Vec::new();
    for sym in obj.dynamic_symbols() {
        if !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        let Some(s) = SYMBOLS.iter().find(|s| **s == name) else {
            continue;
        };
        if found.iter().any(|(f, _)| f == s) {
            continue;
        }
        let offset = if translate {
            let Some(section) = sym
                .section_index()
                .and_then(|i| obj.section_by_index(i).ok())
            else {
                continue;
            };
            let Some((file_off, _)) = section.file_range() else {
                continue;
            };
            sym.address() - section.address() + file_off
        } else {
            sym.address()
        };
        found.push((*s, offset));
    }
    found.sort_by_key(|(s, _)| SYMBOLS.iter().position(|x| x == s));
    Ok(found)
}

/// Whether a set of exported symbols is enough to hook (`SSL_write` and `SSL_read`).
pub fn hookable(found: &[(&str, u64)]) -> bool {
    let has = |n: &str| found.iter().any(|(s, _)| *s == n);
    has("SSL_write") && has("SSL_read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let maps = "\
55d0c0a00000-55d0c0a2e000 r--p 00000000 08:01 1234 /usr/bin/python3.11
55d0c0a2e000-55d0c0d00000 r-xp 0002e000 08:01 1234 /usr/bin/python3.11
7f0000000000-7f0000010000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000010000-7f0000020000 r-xp 00010000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000020000-7f0000030000 r-xp 00000000 00:00 0
7f0000030000-7f0000040000 r-xp 00000000 08:01 7 /tmp/my lib.so
7f0000040000-7f0000050000 r-xp 00000000 08:01 8 /tmp/gone.so (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
garbage
";
        let m: Vec<String> = exec_mappings(maps).into_iter().map(|m| m.path).collect();
        assert_eq!(
            m,
            [
                "/usr/bin/python3.11",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/tmp/my lib.so"
            ]
        );
        assert_eq!(
            host_path(7, "/usr/lib/libssl.so.3"),
            PathBuf::from("/proc/7/root/usr/lib/libssl.so.3")
        );
    }

    #[test]
    fn symbols_of_real_files() {
        // Debian's libssl exports all four; libc none; a non-ELF file is an error.
        let libssl = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if libssl.exists() {
            let found = exported_symbols(libssl).expect("libssl");
            let names: Vec<&str> = found.iter().map(|(s, _)| *s).collect();
            assert_eq!(names, SYMBOLS.to_vec());
            assert!(hookable(&found));
            // offsets inside the file, distinct per symbol
            let size = std::fs::metadata(libssl).expect("meta").len();
            assert!(found.iter().all(|(_, o)| *o > 0 && *o < size), "{found:?}");
        }
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            assert!(exported_symbols(libc).expect("libc").is_empty());
        }
        let dir = tempfile::tempdir().expect("tmp");
        let txt = dir.path().join("x.txt");
        std::fs::write(&txt, "not an ELF").expect("write");
        assert!(exported_symbols(&txt).is_err());
        assert!(!hookable(&[("SSL_write", 1)]));
    }
}
