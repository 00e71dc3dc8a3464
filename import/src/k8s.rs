//! `--k8s-objects`: Kubernetes objects from a `kubectl ... -o json` file, parsed by the
//! format crate, written as `snapshot` rows at the time of the first packet.

use std::path::Path;

use podtrace_format::K8sObject;

use crate::error::ImportError;

/// Reads and parses the file before anything is written, so that a bad file fails early.
/// The objects are stamped 0; [`stamp`] sets their time once the first packet is known.
pub fn read(path: &Path) -> Result<Vec<K8sObject>, ImportError> {
    let json = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    podtrace_format::k8s::objects_from_list(&json, 0).map_err(|e| ImportError::K8sObjects {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Sets every object's timestamp.
pub fn stamp(objects: &mut [K8sObject], ts_ns: u64) {
    for o in objects {
        o.ts_ns = ts_ns;
    }
}
