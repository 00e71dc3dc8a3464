//! `--k8s-objects`: Kubernetes objects from a `kubectl ... -o json` file, through the
//! format crate's parser, as `snapshot` rows.

use std::path::{Path, PathBuf};

use podtrace_format::K8sObject;

use crate::error::ImportError;

/// Reads the file (so that a missing file fails before anything is written).
pub fn read(path: &Path) -> Result<(PathBuf, String), ImportError> {
    let json = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((path.to_path_buf(), json))
}

/// Parses the objects, stamped `ts_ns`.
pub fn objects(path: &Path, json: &str, ts_ns: u64) -> Result<Vec<K8sObject>, ImportError> {
    let _ = (json, ts_ns);
    Err(ImportError::K8sObjects {
        path: path.to_path_buf(),
        reason: "not available yet".into(),
    })
}
