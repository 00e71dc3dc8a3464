//! Kubernetes: pod resolution, metadata snapshots (list + watch) as `k8s_object` rows.
