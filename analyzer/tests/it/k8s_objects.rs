//! Kubernetes objects given at analysis time (`podtrace analyze --k8s-objects`): the chain
//! fixture imported without objects and analysed with the objects file names every
//! workload as the capture with objects does; objects of the capture win over the file's.

// Shared with the golden tests; this file uses only some of it.
#[allow(dead_code)]
use crate::golden_support;

use std::collections::BTreeMap;

use golden_support::*;
use podtrace_analyzer::{analyze_into, Analysis, AnalyzeOptions, Pipeline};
use podtrace_format::{CaptureReader, K8sObject, ReadOptions, Record};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{Span, SpanId, TraceId};

/// The chain pcap imported without Kubernetes objects.
fn bare_records() -> Vec<Record> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("cap.parquet");
    let opts = ImportOptions {
        node: "node-1".into(),
        ..ImportOptions::default()
    };
    import(&fixtures().join("chain/chain.pcap"), &cap, &opts).expect("import");
    let records: Vec<Record> = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()
        .expect("read");
    assert!(!records.iter().any(|r| matches!(r, Record::K8sObject(_))));
    records
}

/// The chain's objects file, parsed as `podtrace analyze --k8s-objects` does.
fn file_objects() -> Vec<K8sObject> {
    let text = std::fs::read_to_string(fixtures().join("chain/k8s-objects.json")).expect("objects");
    podtrace_format::k8s::objects_from_list(&text, 0).expect("a kubectl List")
}

fn run(records: Vec<Record>, file: Option<&[K8sObject]>) -> Analysis {
    let mut p = Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    if let Some(objects) = file {
        p.add_k8s_objects(objects);
    }
    let mut spans = Vec::new();
    let mut a = analyze_into(p, records.into_iter(), |mut b| {
        spans.append(&mut b);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    a.spans = spans;
    a
}

/// What enrichment decided per span: resource and peer attributes.
fn naming(a: &Analysis) -> BTreeMap<(TraceId, SpanId), String> {
    a.spans
        .iter()
        .map(|s: &Span| {
            let peer: Vec<String> = [
                "peer.service",
                "podtrace.peer.pod",
                "podtrace.peer.namespace",
            ]
            .iter()
            .map(|k| attr_str(s, k).unwrap_or("-").to_string())
            .collect();
            (
                (s.trace_id, s.span_id),
                format!("{:?} {}", s.resource, peer.join(" ")),
            )
        })
        .collect()
}

#[test]
fn objects_file_names_workloads_of_a_capture_recorded_without_them() {
    let with_capture = run(import_records("chain", "chain.pcap"), None);
    let bare = run(bare_records(), None);
    let objects = file_objects();
    let with_file = run(bare_records(), Some(&objects));
    assert_eq!(with_file.spans.len(), 70);
    assert_eq!(naming(&with_file), naming(&with_capture));
    assert_eq!(with_file.graph.to_dot(), with_capture.graph.to_dot());
    assert_eq!(with_file.stats.k8s_objects, with_capture.stats.k8s_objects);
    // Without the file, workloads are addresses: the file is what names them.
    assert_ne!(naming(&bare), naming(&with_capture));
    let services: std::collections::BTreeSet<&str> = with_file
        .spans
        .iter()
        .map(|s| s.resource.service_name.as_str())
        .collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        [
            "127.0.0.1",
            "frontend",
            "service-a",
            "service-b",
            "service-c"
        ]
    );
}

#[test]
fn the_captures_objects_win_over_conflicting_ones_in_the_file() {
    let with_capture = run(import_records("chain", "chain.pcap"), None);
    // The file disagrees about every object: other labels and owners for the pods, and
    // Services with other selectors; plus an extra pod at service-a's address and a Service
    // that would select the frontend pod (alphabetically first).
    let mut objects = file_objects();
    for o in &mut objects {
        let mut v: serde_json::Value = serde_json::from_str(&o.json).expect("json");
        match o.kind.as_str() {
            "Pod" => {
                v["metadata"]["labels"] = serde_json::json!({"app": "impostor"});
                v["metadata"]["ownerReferences"] = serde_json::Value::Null;
            }
            "Service" => {
                v["spec"]["selector"] = serde_json::json!({"app": "impostor"});
            }
            _ => {}
        }
        o.json = v.to_string();
    }
    let extra = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "impostor-pod", "namespace": "shop", "uid": "u-impostor",
                      "labels": {"app": "impostor"}},
         "spec": {"nodeName": "node-9"},
         "status": {"podIP": "127.0.1.2", "podIPs": [{"ip": "127.0.1.2"}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "aaa-impostor", "namespace": "shop"},
         "spec": {"selector": {"app": "frontend"}, "clusterIP": "10.96.9.9"}}
    ]});
    objects.extend(podtrace_format::k8s::objects_from_list(&extra.to_string(), 0).expect("extra"));
    let mut records = import_records("chain", "chain.pcap");
    // Capture rows and the file both present: the capture decides.
    let mut p = Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    p.add_k8s_objects(&objects);
    let mut spans = Vec::new();
    let mut a = analyze_into(p, records.drain(..), |mut b| {
        spans.append(&mut b);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    a.spans = spans;
    assert_eq!(naming(&a), naming(&with_capture));
}
