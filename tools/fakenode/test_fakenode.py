"""Unit tests of fakenode: kubelet layouts, mountinfo, the Pod object, and (as root) the module API.

Run: python3 -m unittest discover -s tools/fakenode -p 'test_*.py'
(The Rust side is checked against fakenode in recorder/tests/it/cgroups_fakenode.rs.)
"""

import os
import tempfile
import time
import unittest

import fakenode as f

UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


class Layouts(unittest.TestCase):
    def test_systemd_driver(self):
        u = UID.replace("-", "_")
        self.assertEqual(f.pod_dir_parts("systemd", "besteffort", UID),
                         ["kubepods.slice", "kubepods-besteffort.slice", f"kubepods-besteffort-pod{u}.slice"])
        self.assertEqual(f.pod_dir_parts("systemd", "guaranteed", UID),
                         ["kubepods.slice", f"kubepods-pod{u}.slice"])
        self.assertEqual(f.container_dir_name("systemd", "ab" * 32), f"cri-containerd-{'ab' * 32}.scope")

    def test_cgroupfs_driver(self):
        self.assertEqual(f.pod_dir_parts("cgroupfs", "burstable", UID), ["kubepods", "burstable", f"pod{UID}"])
        self.assertEqual(f.pod_dir_parts("cgroupfs", "guaranteed", UID), ["kubepods", f"pod{UID}"])
        self.assertEqual(f.container_dir_name("cgroupfs", "cd" * 32), "cd" * 32)

    def test_bad_inputs(self):
        with self.assertRaises(ValueError):
            f.pod_dir_parts("systemd", "platinum", UID)
        with self.assertRaises(ValueError):
            f.pod_dir_parts("docker", "besteffort", UID)

    def test_container_ids_are_64_hex(self):
        cid = f.new_container_id()
        self.assertEqual(len(cid), 64)
        int(cid, 16)


class Mountinfo(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_hybrid_and_escapes(self):
        p = self.write("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
                       "41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw shared:9 - cgroup2 cgroup2 rw\n")
        self.assertEqual(f.cgroup2_mount(p), "/sys/fs/cgroup/uni fied")

    def test_v1_only_names_the_hierarchies(self):
        p = self.write("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
        with self.assertRaises(RuntimeError) as cm:
            f.cgroup2_mount(p)
        self.assertIn("/sys/fs/cgroup/cpu", str(cm.exception))


class PodObject(unittest.TestCase):
    def test_running_pod_as_a_kubelet_reports_it(self):
        node = f.FakeNode(node_name="node-x", cgroup_root="/nonexistent")
        pod = f.Pod("demo", "web", UID, "127.0.1.5", {"app": "web"}, "/x", {"web": "ab" * 32}, {}, {}, {})
        obj = node.pod_object(pod, [f.Container("web", ["sleep", "1"])], "burstable",
                              {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u"}, None)
        self.assertEqual(obj["spec"]["nodeName"], "node-x")
        self.assertEqual(obj["status"]["phase"], "Running")
        self.assertEqual(obj["status"]["podIP"], "127.0.1.5")
        self.assertEqual(obj["status"]["qosClass"], "Burstable")
        self.assertEqual(obj["status"]["containerStatuses"][0]["containerID"], "containerd://" + "ab" * 32)
        self.assertTrue(obj["metadata"]["ownerReferences"][0]["controller"])


@unittest.skipUnless(os.geteuid() == 0, "needs root (cgroup writes)")
class ModuleApiAsRoot(unittest.TestCase):
    def test_start_and_stop_a_pod(self):
        with f.FakeNode(driver="cgroupfs") as node:
            pod = node.start_pod("demo", "t", [f.Container("c", ["sleep", "30"])], qos="burstable")
            cdir = pod.cgroup_dirs["c"]
            with open(f"/proc/{pod.pids['c']}/cgroup") as fh:
                v2 = [line for line in fh.read().splitlines() if line.startswith("0::")][0]
            self.assertTrue(cdir.endswith(v2[3:]), (cdir, v2))
            with open(os.path.join(cdir, "cgroup.procs")) as fh:
                self.assertIn(str(pod.pids["c"]), fh.read().split())
            node.stop_pod(pod)
            self.assertFalse(os.path.exists(cdir))
            self.assertFalse(os.path.exists(pod.pod_dir))
            self.assertIsNotNone(pod.processes["c"].poll())


if __name__ == "__main__":
    unittest.main()
