//! Runs Graphviz `dot -Tsvg` on the analyzer's DOT text: the one DOT→SVG runner, used
//! by the binary for `graph.svg`, `--graph-svg` and the report's graph. Graphviz not
//! being installed is not an error here: the report then draws its own simpler graph.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Errors of running Graphviz.
#[derive(Debug, thiserror::Error)]
pub enum GraphvizError {
    /// `dot` could not be started or talked to.
    #[error("running graphviz `dot`: {0}")]
    Io(#[from] std::io::Error),
    /// `dot` failed.
    #[error("graphviz `dot -Tsvg` failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `dot` printed something that is not UTF-8.
    #[error("graphviz `dot` wrote non-UTF-8 output")]
    NotUtf8,
}

/// Renders DOT text to SVG with the `dot` program found on `PATH`. `Ok(None)` when `dot`
/// is not installed.
pub fn dot_to_svg(dot: &str) -> Result<Option<String>, GraphvizError> {
    let mut child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Write on another thread so a large graph cannot deadlock on full pipes.
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
    let input = dot.as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| std::io::Error::other("stdin writer panicked"))??;
    if !out.status.success() {
        return Err(GraphvizError::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    String::from_utf8(out.stdout)
        .map(Some)
        .map_err(|_| GraphvizError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dot_or_reports_it_missing() {
        match dot_to_svg("digraph g { \"a<b\" -> \"c\" }") {
            Ok(Some(svg)) => assert!(svg.contains("<svg") && svg.contains("a&lt;b"), "{svg}"),
            Ok(None) => eprintln!("SKIPPING: graphviz `dot` is not installed"),
            Err(e) => panic!("{e}"),
        }
        if let Ok(Some(_)) = dot_to_svg("digraph {") {
            panic!("bad DOT must fail");
        }
    }
}
