//! Kubernetes objects from JSON, as `kubectl get pods,services,endpointslices -A -o json`
//! prints them, for `k8s_object` rows.
//!
//! Accepted shapes: a `v1 List` with `items` (each item carries its `kind`), a typed list
//! such as `PodList` (items without `kind`: it is the list's kind minus `List`), or a single
//! object. `metadata.managedFields` is removed from the stored JSON (it is large and says
//! nothing about the workload). Every object becomes a [`K8sEvent::Snapshot`] at `ts_ns`.
//!
//! ```
//! let json = r#"{"apiVersion":"v1","kind":"List","items":[
//!   {"kind":"Pod","metadata":{"uid":"u1","namespace":"demo","name":"web-1",
//!    "managedFields":[{"manager":"kubectl"}]}}]}"#;
//! let objs = podtrace_format::k8s::objects_from_list(json, 7).unwrap();
//! assert_eq!(objs[0].kind, "Pod");
//! assert_eq!(objs[0].name, "web-1");
//! assert!(!objs[0].json.contains("managedFields"));
//! ```

use serde_json::Value;

use crate::error::{FormatError, Result};
use crate::model::{K8sEvent, K8sObject};

/// Parses a List, a typed list or one object into `k8s_object` rows (snapshots at `ts_ns`).
pub fn objects_from_list(json: &str, ts_ns: u64) -> Result<Vec<K8sObject>> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| FormatError::K8sJson(format!("not JSON: {e}")))?;
    let Value::Object(top) = &value else {
        return Err(FormatError::K8sJson(
            "expected a JSON object (a List or one object)".to_string(),
        ));
    };
    let kind = top.get("kind").and_then(Value::as_str).unwrap_or("");
    match top.get("items") {
        Some(Value::Array(items)) => {
            // `PodList` → items are `Pod`; a plain `List` mixes kinds and each item says its own.
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    object(item.clone(), item_kind, ts_ns)
                        .map_err(|e| FormatError::K8sJson(format!("items[{i}]: {e}")))
                })
                .collect()
        }
        Some(_) => Err(FormatError::K8sJson("`items` is not an array".to_string())),
        None => Ok(vec![
            object(value, None, ts_ns).map_err(FormatError::K8sJson)?
        ]),
    }
}

/// One object; `default_kind` applies when the object has no `kind`.
fn object(
    mut value: Value,
    default_kind: Option<&str>,
    ts_ns: u64,
) -> std::result::Result<K8sObject, String> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let kind = match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => default_kind
            .ok_or_else(|| "no `kind`".to_string())?
            .to_string(),
    };
    let meta = obj
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("{kind} without `metadata`"))?;
    meta.remove("managedFields");
    let field = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (uid, namespace, name) = (field("uid"), field("namespace"), field("name"));
    if name.is_empty() {
        return Err(format!("{kind} without `metadata.name`"));
    }
    if !obj.contains_key("kind") {
        obj.insert("kind".to_string(), Value::String(kind.clone()));
    }
    Ok(K8sObject {
        ts_ns,
        kind,
        uid,
        namespace,
        name,
        event: K8sEvent::Snapshot,
        json: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_list_as_kubectl_prints_it() {
        let json = r#"{
          "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
          "items": [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-1", "namespace": "demo", "uid": "p1",
                          "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
             "status": {"podIP": "10.0.0.5"}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": "demo", "uid": "s1"},
             "spec": {"clusterIP": "10.96.0.10"}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-abc", "namespace": "demo", "uid": "e1"},
             "endpoints": []}
          ]}"#;
        let objs = objects_from_list(json, 42).unwrap();
        let kinds: Vec<_> = objs.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["Pod", "Service", "EndpointSlice"]);
        let pod = &objs[0];
        assert_eq!(
            (pod.uid.as_str(), pod.namespace.as_str(), pod.name.as_str()),
            ("p1", "demo", "web-1")
        );
        assert_eq!(pod.ts_ns, 42);
        assert_eq!(pod.event, K8sEvent::Snapshot);
        let v: Value = serde_json::from_str(&pod.json).unwrap();
        assert!(v["metadata"].get("managedFields").is_none());
        assert_eq!(v["status"]["podIP"], "10.0.0.5");
    }

    #[test]
    fn typed_list_items_get_the_list_kind() {
        let json =
            r#"{"kind":"PodList","items":[{"metadata":{"name":"a","namespace":"x","uid":"1"}}]}"#;
        let objs = objects_from_list(json, 1).unwrap();
        assert_eq!(objs[0].kind, "Pod");
        let v: Value = serde_json::from_str(&objs[0].json).unwrap();
        assert_eq!(v["kind"], "Pod");
    }

    #[test]
    fn single_object_and_cluster_scoped() {
        let json = r#"{"kind":"Node","metadata":{"name":"n1","uid":"9"}}"#;
        let objs = objects_from_list(json, 1).unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].namespace, "");
    }

    #[test]
    fn bad_inputs_are_errors() {
        for bad in [
            "",
            "[1,2]",
            "not json",
            r#"{"kind":"List","items":{}}"#,
            r#"{"kind":"List","items":[{"metadata":{"name":"a"}}]}"#,
            r#"{"kind":"Pod","metadata":{}}"#,
            r#"{"kind":"Pod"}"#,
        ] {
            assert!(
                matches!(objects_from_list(bad, 0), Err(FormatError::K8sJson(_))),
                "{bad}"
            );
        }
    }
}
