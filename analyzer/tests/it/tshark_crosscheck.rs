//! Cross-check with an independent HTTP dissector: Wireshark's (tshark) view of the chain
//! fixture's requests and responses must equal the analyzer's server spans.

use std::path::Path;
use std::process::Command;

use podtrace_analyzer::{analyze, AnalyzeOptions};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{AttrValue, SpanKind};

/// Rows of `tshark -T fields`, multi-occurrence fields split on `|`.
fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Option<Vec<Vec<Vec<String>>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-d", "tcp.port==18080,http", "-Y", filter, "-T", "fields"])
        .args(["-E", "occurrence=a", "-E", "aggregator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!("tshark failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIPPING tshark cross-check: tshark not runnable: {e}");
            return None;
        }
    };
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                l.split('\t')
                    .map(|f| f.split('|').map(str::to_string).collect())
                    .collect()
            })
            .collect(),
    )
}

fn s(v: Option<&AttrValue>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

#[test]
fn server_spans_match_tshark_requests_and_responses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/chain");
    let pcap = dir.join("chain.pcap");
    let Some(requests) = tshark(
        &pcap,
        "http.request",
        &[
            "ip.src",
            "tcp.srcport",
            "http.request.method",
            "http.request.uri",
        ],
    ) else {
        return;
    };
    let Some(responses) = tshark(
        &pcap,
        "http.response",
        &["ip.dst", "tcp.dstport", "http.response.code"],
    ) else {
        return;
    };
    // (client ip, client port, method, target) per request, several per pipelined frame.
    let mut want_req: Vec<(String, String, String, String)> = requests
        .iter()
        .flat_map(|r| {
            r[2].iter()
                .zip(&r[3])
                .map(move |(m, u)| (r[0][0].clone(), r[1][0].clone(), m.clone(), u.clone()))
        })
        .collect();
    let mut want_resp: Vec<(String, String, String)> = responses
        .iter()
        .flat_map(|r| {
            r[2].iter()
                .map(move |c| (r[0][0].clone(), r[1][0].clone(), c.clone()))
        })
        .collect();

    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("chain.parquet");
    import(&pcap, &cap, &ImportOptions::default()).expect("import");
    let records = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    let a = analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze");
    let servers: Vec<_> = a
        .spans
        .iter()
        .filter(|x| x.kind == SpanKind::Server)
        .collect();
    let mut got_req: Vec<(String, String, String, String)> = servers
        .iter()
        .map(|x| {
            let path = s(x.attribute("url.path"));
            let target = match x.attribute("url.query") {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            (
                s(x.attribute("network.peer.address")),
                s(x.attribute("network.peer.port")),
                s(x.attribute("http.request.method")),
                target,
            )
        })
        .collect();
    let mut got_resp: Vec<(String, String, String)> = servers
        .iter()
        .map(|x| {
            (
                s(x.attribute("network.peer.address")),
                s(x.attribute("network.peer.port")),
                s(x.attribute("http.response.status_code")),
            )
        })
        .collect();
    for v in [&mut want_req, &mut got_req] {
        v.sort();
    }
    for v in [&mut want_resp, &mut got_resp] {
        v.sort();
    }
    assert_eq!(
        want_req.len(),
        35,
        "tshark sees the 35 requests of the chain"
    );
    assert_eq!(got_req, want_req);
    assert_eq!(got_resp, want_resp);
    assert_eq!(
        a.spans
            .iter()
            .filter(|x| x.kind == SpanKind::Client)
            .count(),
        want_req.len(),
        "every request was also recorded on its client socket"
    );
}
