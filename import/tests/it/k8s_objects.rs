//! `--k8s-objects`: a `kubectl get ... -o json` List becomes `k8s_object` snapshot rows at
//! the time of the first packet, written before the socket rows of that instant.

use crate::common;

use common::*;
use podtrace_format::{K8sEvent, Record};
use podtrace_import::{import, ImportError, ImportOptions};

const LIST: &str = r#"{"apiVersion":"v1","kind":"List","items":[
 {"apiVersion":"v1","kind":"Pod","metadata":{"uid":"pod-uid-1","namespace":"demo","name":"web-1",
   "managedFields":[{"manager":"kubectl"}]},"status":{"podIP":"10.0.0.2"}},
 {"apiVersion":"v1","kind":"Service","metadata":{"uid":"svc-uid-1","namespace":"demo","name":"web"},
   "spec":{"clusterIP":"10.96.0.10"}}]}"#;

#[test]
fn objects_are_snapshots_at_the_first_packet() {
    let mut c = Conv::new("10.0.0.1:40000", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, b"GET / HTTP/1.1\r\n\r\n");
    c.close();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("in.pcap");
    write_pcap(&pcap, &c.frames);
    let objects = dir.path().join("objects.json");
    std::fs::write(&objects, LIST).unwrap();
    let out = dir.path().join("cap.parquet");
    let opts = ImportOptions {
        k8s_objects: Some(objects.clone()),
        node: "node-a".into(),
        ..ImportOptions::default()
    };
    let summary = import(&pcap, &out, &opts).unwrap();
    assert_eq!(summary.k8s_objects, 2);
    let (meta, rows) = read_capture(&out);
    assert_eq!(meta.node, "node-a");
    assert_sorted(&rows);
    let k8s: Vec<_> = rows
        .iter()
        .filter_map(|r| match r {
            Record::K8sObject(k) => Some(k),
            _ => None,
        })
        .collect();
    assert_eq!(k8s.len(), 2);
    assert!(matches!(rows[0], Record::K8sObject(_)) && matches!(rows[1], Record::K8sObject(_)));
    let first_packet = c.frames[0].0;
    for k in &k8s {
        assert_eq!(k.ts_ns, first_packet);
        assert_eq!(k.event, K8sEvent::Snapshot);
        assert_eq!(k.namespace, "demo");
    }
    assert_eq!(
        (k8s[0].kind.as_str(), k8s[0].name.as_str()),
        ("Pod", "web-1")
    );
    assert!(!k8s[0].json.contains("managedFields"));
    assert_eq!(
        (k8s[1].kind.as_str(), k8s[1].uid.as_str()),
        ("Service", "svc-uid-1")
    );

    // A bad objects file fails before any output is written.
    std::fs::write(&objects, "{not json").unwrap();
    let out2 = dir.path().join("cap2.parquet");
    let err = import(&pcap, &out2, &opts).unwrap_err();
    assert!(matches!(err, ImportError::K8sObjects { .. }), "{err:?}");
    assert!(err.to_string().contains("objects.json"), "{err}");
    assert!(!out2.exists());
}
