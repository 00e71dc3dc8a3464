//! The pipeline cut into per-group fronts and one merger (`pipeline::parts`, what
//! `podtrace analyze --cluster` runs) gives exactly the local result: the same span
//! batches in the same order, the same graph and the same stats, for the chain fixture
//! split per node and for a long multi-node input (many batches, drains and evictions).

use crate::golden_support::import_records;

use podtrace_analyzer::pipeline::parts::{
    run_front, BatchPlanner, FrontMessage, FrontOptions, Merger,
};
use podtrace_analyzer::{analyze_into, merge_by_time, merge_by_time_tagged, Analysis};
use podtrace_analyzer::{AnalyzeOptions, Pipeline};
use podtrace_format::nodes::{repeat, split_by_local_ip, Closes};
use podtrace_format::Record;
use podtrace_model::Span;

/// The local run over `captures` (merged by time): span batches and the analysis.
fn local(captures: &[Vec<Record>], opts: &AnalyzeOptions) -> (Vec<Vec<Span>>, Analysis) {
    let mut batches = Vec::new();
    let analysis = analyze_into(
        Pipeline::new(opts).expect("options"),
        merge_by_time(captures.iter().map(|c| c.clone().into_iter()).collect()),
        |b| -> Result<(), String> {
            batches.push(b);
            Ok(())
        },
    )
    .expect("local run");
    (batches, analysis)
}

/// The parts run: `groups` are lists of capture indices; every message goes through its
/// wire form; the merger takes the groups' messages interleaved.
fn parts(
    captures: &[Vec<Record>],
    groups: &[Vec<usize>],
    opts: &AnalyzeOptions,
) -> (Vec<Vec<Span>>, Analysis) {
    let mut planner = BatchPlanner::new(captures.len());
    for (i, r) in merge_by_time_tagged(captures.iter().map(|c| c.clone().into_iter()).collect()) {
        planner.push(i, &r);
    }
    let (plan, k8s) = planner.finish();
    let mut per_group: Vec<Vec<Vec<u8>>> = Vec::new();
    for g in groups {
        let records = merge_by_time(g.iter().map(|&c| captures[c].clone().into_iter()).collect());
        let mut out = Vec::new();
        run_front(
            &FrontOptions::of(opts),
            &plan.watermarks,
            &plan.group_rows(g),
            records,
            |m| -> Result<(), String> {
                out.push(m.to_bytes().expect("serialize"));
                Ok(())
            },
        )
        .expect("front run");
        per_group.push(out);
    }
    let mut merger = Merger::new(opts, &plan, k8s, groups.len()).expect("merger");
    let mut batches = Vec::new();
    let mut sink = |b: Vec<Span>| -> Result<(), String> {
        batches.push(b);
        Ok(())
    };
    let mut iters: Vec<_> = per_group.into_iter().map(|g| g.into_iter()).collect();
    loop {
        let mut any = false;
        for (g, it) in iters.iter_mut().enumerate() {
            if let Some(bytes) = it.next() {
                any = true;
                let m = FrontMessage::from_bytes(&bytes).expect("deserialize");
                merger.push(g, m, &mut sink).expect("merge");
            }
        }
        if !any {
            break;
        }
    }
    let analysis = merger.finish(&mut sink).expect("finish");
    (batches, analysis)
}

fn assert_same(a: &(Vec<Vec<Span>>, Analysis), b: &(Vec<Vec<Span>>, Analysis)) {
    assert_eq!(a.0.len(), b.0.len(), "span batches");
    for (x, y) in a.0.iter().zip(&b.0) {
        assert_eq!(x, y);
    }
    assert_eq!(a.1.graph.to_dot(), b.1.graph.to_dot());
    assert_eq!(a.1.stats, b.1.stats);
}

/// The chain repeated `copies` times, `step_ns` apart, with fresh connection ids (every
/// other copy without its connections' closes).
fn repeated_chain(copies: u64, step_ns: u64) -> Vec<Record> {
    repeat(
        &import_records("chain", "chain.pcap"),
        copies,
        step_ns,
        Closes::EvenCopies,
    )
}

#[test]
fn the_chain_split_per_node_gives_the_local_result() {
    let records = import_records("chain", "chain.pcap");
    let captures = split_by_local_ip(&records);
    assert!(captures.len() >= 4, "{} nodes", captures.len());
    let opts = AnalyzeOptions::default();
    let want = local(&captures, &opts);
    assert!(!want.0.is_empty());
    let groups: Vec<Vec<usize>> = (0..captures.len()).map(|i| vec![i]).collect();
    assert_same(&want, &parts(&captures, &groups, &opts));
    // Two nodes' captures in one group: the same again.
    let mut paired = vec![vec![0, 1]];
    paired.extend((2..captures.len()).map(|i| vec![i]));
    assert_same(&want, &parts(&captures, &paired, &opts));
}

#[test]
fn a_long_multi_node_input_gives_the_local_result_batch_for_batch() {
    // ~17 batches of 8192 records over ~650 s with a 20 s window: many drains, links
    // across nodes and evictions of idle connections.
    let records = repeated_chain(500, 1_300_000_000);
    let captures = split_by_local_ip(&records);
    let opts = AnalyzeOptions {
        window_ns: 20_000_000_000,
        ..AnalyzeOptions::default()
    };
    let want = local(&captures, &opts);
    assert!(want.0.len() > 10, "{} span batches", want.0.len());
    assert!(want.1.stats.records > 8192 * 5, "{}", want.1.stats.records);
    assert!(want.1.stats.evictions.connections > 0, "{}", want.1.stats);
    let groups: Vec<Vec<usize>> = (0..captures.len()).map(|i| vec![i]).collect();
    assert_same(&want, &parts(&captures, &groups, &opts));
}

#[test]
fn a_connection_in_two_groups_is_refused() {
    let records = import_records("chain", "chain.pcap");
    let mut captures = split_by_local_ip(&records);
    // The same node's rows twice, as two groups: every key collides.
    captures.push(captures[1].clone());
    let opts = AnalyzeOptions::default();
    let mut planner = BatchPlanner::new(captures.len());
    for (i, r) in merge_by_time_tagged(captures.iter().map(|c| c.clone().into_iter()).collect()) {
        planner.push(i, &r);
    }
    let (plan, k8s) = planner.finish();
    let mut merger = Merger::new(&opts, &plan, k8s, captures.len()).expect("merger");
    let mut sink = |_: Vec<Span>| -> Result<(), String> { Ok(()) };
    let mut err = None;
    for (g, cap) in captures.iter().enumerate() {
        let mut msgs = Vec::new();
        run_front(
            &FrontOptions::of(&opts),
            &plan.watermarks,
            &plan.group_rows(&[g]),
            cap.clone().into_iter(),
            |m| -> Result<(), String> {
                msgs.push(m);
                Ok(())
            },
        )
        .expect("front run");
        for m in msgs {
            if let Err(e) = merger.push(g, m, &mut sink) {
                err = Some(e.to_string());
            }
        }
    }
    let err = match err {
        Some(e) => e,
        None => merger
            .finish(&mut sink)
            .expect_err("a collision")
            .to_string(),
    };
    assert!(err.contains("two capture groups"), "{err}");
}

#[test]
fn a_front_that_does_not_match_the_plan_is_an_error() {
    let records = import_records("chain", "chain.pcap");
    let mut planner = BatchPlanner::new(1);
    for r in &records {
        planner.push(0, r);
    }
    let (plan, _) = planner.finish();
    let fewer = records[..records.len() - 1].to_vec();
    let err = run_front(
        &FrontOptions::of(&AnalyzeOptions::default()),
        &plan.watermarks,
        &plan.group_rows(&[0]),
        fewer.into_iter(),
        |_| -> Result<(), String> { Ok(()) },
    )
    .expect_err("fewer rows than planned");
    assert!(err.to_string().contains("changed"), "{err}");
}
