"""Unit tests of the test API server's pure parts: selectors, tables, discovery, store, watch cache.

Run: python3 -m unittest discover -s tools/k8s-apiserver -p 'test_*.py'
(The end-to-end checks with the real kubectl and kube-rs are in recorder/tests/it/k8s_apiserver.rs.)
"""

import unittest

import apiserver as a


def pod(name, ns="demo", labels=None, node="n1", phase="Running"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": phase}}


class LabelSelectors(unittest.TestCase):
    def check(self, sel, labels, want):
        self.assertEqual(a.parse_label_selector(sel)(labels), want, f"{sel!r} on {labels}")

    def test_equality_and_inequality(self):
        self.check("app=web", {"app": "web"}, True)
        self.check("app==web", {"app": "web"}, True)
        self.check("app=web", {"app": "db"}, False)
        self.check("app=web", {}, False)
        self.check("app!=web", {}, True)  # != matches objects without the key, as in Kubernetes
        self.check("app!=web", {"app": "web"}, False)
        self.check("app=web,tier=fe", {"app": "web", "tier": "fe"}, True)
        self.check("app=web,tier=fe", {"app": "web"}, False)
        self.check("", {"x": "y"}, True)

    def test_sets_and_existence(self):
        self.check("env in (prod, staging)", {"env": "staging"}, True)
        self.check("env in (prod,staging)", {"env": "dev"}, False)
        self.check("env notin (prod)", {}, True)
        self.check("env notin (prod)", {"env": "prod"}, False)
        self.check("env", {"env": ""}, True)
        self.check("!env", {"env": "x"}, False)
        self.check("!env,app in (web)", {"app": "web"}, True)

    def test_bad_syntax_is_400(self):
        for bad in ("app in (web,", "a b c", "=x"):
            with self.assertRaises(a.ApiError) as cm:
                a.parse_label_selector(bad)
            self.assertEqual(cm.exception.code, 400)


class FieldSelectors(unittest.TestCase):
    def test_supported_fields(self):
        p = pod("web-1", node="node-a")
        self.assertTrue(a.parse_field_selector("metadata.name=web-1")(p))
        self.assertTrue(a.parse_field_selector("spec.nodeName==node-a,metadata.namespace=demo")(p))
        self.assertFalse(a.parse_field_selector("spec.nodeName!=node-a")(p))
        self.assertTrue(a.parse_field_selector("status.phase=Running")(p))

    def test_unknown_field_is_400_like_kube_apiserver(self):
        with self.assertRaises(a.ApiError) as cm:
            a.parse_field_selector("spec.foo=bar")
        self.assertEqual(cm.exception.code, 400)
        self.assertIn("field label not supported", cm.exception.message)


class Tables(unittest.TestCase):
    def test_human_duration_matches_apimachinery(self):
        cases = {0: "0s", 59: "59s", 119: "119s", 120: "2m", 150: "2m30s", 600: "10m", 3 * 3600: "3h",
                 3 * 3600 + 60 * 5: "3h5m", 30 * 3600: "30h", 50 * 3600: "2d2h", 10 * 86400: "10d",
                 800 * 86400: "2y70d", -5: "<invalid>"}
        for secs, want in cases.items():
            self.assertEqual(a.human_duration(secs), want, secs)

    def test_pod_row(self):
        p = pod("web-1")
        p["spec"]["containers"] = [{"name": "a"}, {"name": "b"}]
        p["status"].update({"podIP": "127.0.1.5", "containerStatuses": [
            {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
            {"name": "b", "ready": False, "restartCount": 1,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
        row = a.pod_row(p)
        self.assertEqual(row[:4], ["web-1", "1/2", "CrashLoopBackOff", "3"])
        self.assertEqual(row[5:7], ["127.0.1.5", "n1"])
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        self.assertEqual(a.pod_row(p)[2], "Terminating")

    def test_service_and_endpointslice_rows(self):
        svc = {"kind": "Service", "metadata": {"name": "web"},
               "spec": {"clusterIP": "10.0.0.1", "selector": {"b": "2", "a": "1"},
                        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}]}}
        row = a.svc_row(svc)
        self.assertEqual(row[:5], ["web", "ClusterIP", "10.0.0.1", "<none>", "80/TCP,443:30443/TCP"])
        self.assertEqual(row[6], "a=1,b=2")
        eps = {"kind": "EndpointSlice", "metadata": {"name": "web-x"}, "addressType": "IPv4",
               "ports": [{"port": 8080}], "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(5)]}
        self.assertEqual(a.eps_row(eps)[:4], ["web-x", "IPv4", "8080", "10.0.0.0,10.0.0.1,10.0.0.2 + 2 more..."])

    def test_table_carries_partial_object_metadata(self):
        t = a.to_table([dict(pod("x"), metadata={"name": "x", "namespace": "d"})], "Pod", "5", "Metadata", None)
        self.assertEqual(t["kind"], "Table")
        self.assertEqual(t["rows"][0]["object"]["kind"], "PartialObjectMetadata")
        self.assertEqual(t["rows"][0]["object"]["metadata"]["namespace"], "d")
        self.assertEqual(len(t["columnDefinitions"]), 9)
        self.assertNotIn("object", a.to_table([pod("x")], "Pod", "5", "None", None)["rows"][0])


class Discovery(unittest.TestCase):
    def test_aggregated_accept_header(self):
        kubectl = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                   "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
        self.assertEqual(a.aggregated_discovery_version(kubectl), "v2")
        self.assertEqual(a.aggregated_discovery_version(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"), "v2beta1")
        self.assertIsNone(a.aggregated_discovery_version("application/json, */*"))

    def test_aggregated_documents(self):
        core = a.aggregated_discovery(True, "v2")
        res = {r["resource"]: r for r in core["items"][0]["versions"][0]["resources"]}
        self.assertEqual(res["pods"]["scope"], "Namespaced")
        self.assertEqual(res["nodes"]["scope"], "Cluster")
        self.assertEqual(res["services"]["shortNames"], ["svc"])
        groups = a.aggregated_discovery(False, "v2")
        self.assertEqual(groups["items"][0]["metadata"]["name"], "discovery.k8s.io")
        self.assertEqual(groups["items"][0]["versions"][0]["resources"][0]["responseKind"]["kind"], "EndpointSlice")


class StoreAndHistory(unittest.TestCase):
    def test_put_assigns_versions_and_keeps_uid(self):
        s = a.Store()
        first = s.put(pod("p"))
        again = s.put(pod("p"))
        self.assertEqual(first["metadata"]["uid"], again["metadata"]["uid"])
        self.assertGreater(int(again["metadata"]["resourceVersion"]), int(first["metadata"]["resourceVersion"]))
        self.assertEqual([e.type for e in s.events if e.resource.kind == "Pod"], ["ADDED", "MODIFIED"])
        # the namespace is implied
        self.assertEqual(s.get(a.BY_KIND[("v1", "Namespace")], "", "demo")["status"]["phase"], "Active")

    def test_create_conflict_and_delete(self):
        s = a.Store()
        s.put(pod("p"), create_only=True)
        with self.assertRaises(a.ApiError) as cm:
            s.put(pod("p"), create_only=True)
        self.assertEqual(cm.exception.code, 409)
        gone = s.delete(a.BY_KIND[("v1", "Pod")], "demo", "p")
        self.assertEqual(s.events[-1].type, "DELETED")
        self.assertEqual(gone["metadata"]["resourceVersion"], str(s.rv))
        with self.assertRaises(a.ApiError) as cm:
            s.delete(a.BY_KIND[("v1", "Pod")], "demo", "p")
        self.assertEqual(cm.exception.code, 404)

    def test_compaction_moves_the_oldest_watchable_version(self):
        s = a.Store()
        s.put(pod("p"))
        before = s.first_rv()
        rv = s.compact()
        self.assertEqual(s.first_rv(), rv)
        self.assertGreater(rv, before)

    def test_unknown_kind_is_rejected(self):
        with self.assertRaises(a.ApiError) as cm:
            a.Store().put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})
        self.assertEqual(cm.exception.code, 400)


if __name__ == "__main__":
    unittest.main()
