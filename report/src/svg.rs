//! A request-flow graph drawn without Graphviz: a simple layered SVG.
//!
//! Used when the caller has no `dot -Tsvg` output. Nodes are placed in columns by their
//! longest call path from a caller that nobody calls (cycles are cut after as many rounds
//! as there are nodes), sorted by name within a column; edges are curves with an arrow
//! head and a `count · p99 · errors` label. Every name is XML-escaped; long names are
//! shortened on the box and kept whole in its `<title>` tooltip.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::escape::html;
use crate::tables::EdgeRow;
use crate::units::duration;

const BOX_W: f64 = 190.0;
const BOX_H: f64 = 48.0;
const COL_GAP: f64 = 130.0;
const ROW_GAP: f64 = 36.0;
const MARGIN: f64 = 24.0;
const MAX_CHARS: usize = 26;

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// Draws the graph; `nodes` are `(name, requests, errors)`.
pub fn draw(nodes: &[(String, u64, u64)], edges: &[EdgeRow]) -> String {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.0.as_str(), i))
        .collect();
    let links: Vec<(usize, usize, &EdgeRow)> = edges
        .iter()
        .filter_map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?, e)))
        .collect();
    // Longest-path layering, bounded so cycles terminate.
    let n = nodes.len();
    let mut rank = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for &(a, b, _) in &links {
            if a != b && rank[b] < rank[a] + 1 && rank[a] + 1 < n {
                rank[b] = rank[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, r) in rank.iter().enumerate() {
        columns.entry(*r).or_default().push(i);
    }
    let mut pos = vec![(0.0f64, 0.0f64); n];
    let mut max_rows = 0usize;
    for (col, members) in columns.values().enumerate() {
        max_rows = max_rows.max(members.len());
        for (row, &i) in members.iter().enumerate() {
            pos[i] = (
                MARGIN + col as f64 * (BOX_W + COL_GAP),
                MARGIN + row as f64 * (BOX_H + ROW_GAP),
            );
        }
    }
    let width = MARGIN * 2.0 + columns.len().max(1) as f64 * (BOX_W + COL_GAP) - COL_GAP;
    let height = MARGIN * 2.0 + max_rows.max(1) as f64 * (BOX_H + ROW_GAP) - ROW_GAP + 40.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker>\
         <marker id=\"arrow-bad\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c0392b\"/></marker></defs>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
    );
    for &(a, b, e) in &links {
        let color = if e.errors > 0 { "#c0392b" } else { "#555" };
        let marker = if e.errors > 0 { "arrow-bad" } else { "arrow" };
        let label = format!(
            "{} req · p99 {}{}",
            e.count,
            duration(e.p99_ns),
            if e.errors > 0 {
                format!(" · {} err", e.errors)
            } else {
                String::new()
            }
        );
        let (ax, ay) = pos[a];
        let (bx, by) = pos[b];
        let (path, lx, ly) = if a == b {
            // Self call: a loop above the box.
            let (x, y) = (ax + BOX_W / 2.0, ay);
            (
                format!(
                    "M{:.1},{y:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{y:.1}",
                    x - 20.0,
                    x - 40.0,
                    y - 40.0,
                    x + 40.0,
                    y - 40.0,
                    x + 20.0
                ),
                x,
                y - 34.0,
            )
        } else if bx > ax {
            let (x1, y1, x2, y2) = (ax + BOX_W, ay + BOX_H / 2.0, bx, by + BOX_H / 2.0);
            let mx = (x1 + x2) / 2.0;
            (
                format!("M{x1:.1},{y1:.1} C{mx:.1},{y1:.1} {mx:.1},{y2:.1} {x2:.1},{y2:.1}"),
                mx,
                (y1 + y2) / 2.0 - 6.0,
            )
        } else {
            // Back or same-column edge: bottom to bottom, bulging below.
            let (x1, y1, x2, y2) = (ax + BOX_W / 2.0, ay + BOX_H, bx + BOX_W / 2.0, by + BOX_H);
            let dip = y1.max(y2) + 40.0;
            (
                format!("M{x1:.1},{y1:.1} C{x1:.1},{dip:.1} {x2:.1},{dip:.1} {x2:.1},{y2:.1}"),
                (x1 + x2) / 2.0,
                dip - 4.0,
            )
        };
        let _ = writeln!(
            out,
            "<g class=\"edge\"><title>{} → {}: {}</title><path d=\"{path}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.4\" marker-end=\"url(#{marker})\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{color}\">{}</text></g>",
            html(&e.from),
            html(&e.to),
            html(&label),
            html(&label)
        );
    }
    for (i, (name, requests, errors)) in nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let stroke = if *errors > 0 { "#c0392b" } else { "#34495e" };
        let _ = writeln!(
            out,
            "<g class=\"node\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"8\" fill=\"#f4f7fb\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#555\">{} req, {} err</text></g>",
            html(name),
            x + BOX_W / 2.0,
            y + 20.0,
            html(&shorten(name)),
            x + BOX_W / 2.0,
            y + 36.0,
            requests,
            errors
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str, errors: u64) -> EdgeRow {
        EdgeRow {
            from: from.into(),
            to: to.into(),
            count: 3,
            errors,
            avg_ns: 1000,
            p50_ns: 1000,
            p99_ns: 2000,
        }
    }

    #[test]
    fn layers_follow_calls_and_cycles_terminate() {
        let nodes: Vec<(String, u64, u64)> = ["a", "b", "c", "<evil&>"]
            .iter()
            .map(|n| (n.to_string(), 1, 0))
            .collect();
        let svg = draw(
            &nodes,
            &[
                edge("a", "b", 0),
                edge("b", "c", 1),
                edge("c", "b", 0),
                edge("c", "c", 0),
                edge("<evil&>", "a", 0),
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("&lt;evil&amp;&gt;") && !svg.contains("<evil"));
        assert_eq!(svg.matches("class=\"node\"").count(), 4);
        assert_eq!(svg.matches("class=\"edge\"").count(), 5);
        assert!(svg.contains("3 req · p99 2µs · 1 err"));
    }

    #[test]
    fn long_names_are_shortened_on_the_box_only() {
        let long = "x".repeat(40);
        let svg = draw(&[(long.clone(), 0, 0)], &[]);
        assert!(svg.contains(&format!("<title>{long}</title>")));
        assert!(svg.contains(&format!(">{}…</text>", "x".repeat(MAX_CHARS - 1))));
    }
}
