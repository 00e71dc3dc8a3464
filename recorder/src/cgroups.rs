//! cgroup v2 discovery: the v2 mount, cgroup ids, a pid's cgroup, a pod's directories.
