//! `podtrace record`: a pod's (or cgroup's, or process's) socket traffic and the cluster's
//! metadata into a capture file, until Ctrl-C, SIGTERM or a limit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use podtrace_format::WriterOptions;
use podtrace_recorder::k8s::this_node_name;
use podtrace_recorder::{record_to_file, Progress, RecorderError};

use crate::cli::RecordArgs;
use crate::cmd::target::{self, recorder_error, shutdown_signal};
use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(args: RecordArgs) -> CmdResult {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let output = output_path(&args)?;
        let mut target = target::resolve(args.pod.as_deref(), &args.target).await?;
        let mut config = target.config.clone();
        config.limits.max_size = args.max_size;
        let existed = output.exists();
        let bar = spinner();
        let label = format!(
            "{} into {}",
            config.target_label,
            output.display()
        );
        let mut attached = false;
        let result = record_to_file(
            config,
            &output,
            WriterOptions::default()
                .rotate_duration(args.rotate)
                .zstd_level(args.zstd_level),
            target.k8s_rows.take(),
            shutdown,
            |p: &Progress| {
                if !attached {
                    // The first progress report comes from a running recorder: tell scripts
                    // and people that traffic from now on is captured.
                    attached = true;
                    bar.suspend(|| eprintln!("podtrace: probes attached ({}), recording {label} (Ctrl-C to stop)", p.probes));
                }
                let line = progress_line(p);
                tracing::debug!("{line}");
                bar.set_message(line);
            },
        )
        .await;
        bar.finish_and_clear();
        target.stop().await;
        let summary = match result {
            Ok(summary) => summary,
            Err(e) => {
                if !existed && failed_at_start(&e) {
                    // Nothing was recorded: leave no empty capture behind.
                    let _ = std::fs::remove_file(&output);
                    let _ = std::fs::remove_file(podtrace_format::sidecar_path(&output));
                }
                return Err(recorder_error(e));
            }
        };
        println!(
            "recorded {} socket events and {} metadata rows in {:.1} s ({:?}); {} rows in {} file(s); dropped {} events",
            summary.socket_events,
            summary.extra_rows,
            summary.elapsed.as_secs_f64(),
            summary.reason,
            summary.write.rows,
            summary.write.files.len(),
            summary.stats.total_dropped()
        );
        for f in &summary.write.files {
            println!("wrote {}", f.display());
        }
        let st = &summary.stats;
        let h2 = st.h2_redaction;
        if st.payloads_redacted > 0 || h2 != Default::default() {
            println!(
                "redacted {} payloads; HTTP/2: {} values rewritten, {} header blocks blanked, {} unknown names redacted, {} losses of sync, {} payloads unchecked",
                st.payloads_redacted,
                h2.h2_values_redacted,
                h2.h2_blocks_blanked,
                h2.h2_unknown_names_redacted,
                h2.h2_sync_lost,
                h2.h2_payloads_unchecked
            );
        }
        for (bytes, verb) in [
            (st.bytes_read_uncaptured, "read"),
            (st.bytes_written_uncaptured, "written"),
        ] {
            if bytes > 0 {
                eprintln!(
                    "podtrace: {bytes} bytes {verb} by the applications (the kernel's count at the connections' close, {} connections checked) are in no event",
                    st.connections_checked
                );
            }
        }
        if st.sockets_expired > 0 {
            println!(
                "{} sockets without an event for 10 minutes lost their state (UDP sockets, closes not seen): a later event of one starts a new connection id",
                st.sockets_expired
            );
        }
        if summary.beyond_max_events > 0 {
            eprintln!(
                "podtrace: --max-events reached: {} later socket events left out",
                summary.beyond_max_events
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The capture file: `-o FILE`, or `<node>-<UTC time>.parquet` inside `-o DIR` (an existing
/// directory, or a path ending in `/`, created).
fn output_path(args: &RecordArgs) -> Result<PathBuf, CliError> {
    let out = &args.output;
    let is_dir = out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/');
    if !is_dir {
        return Ok(out.clone());
    }
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("creating {}: {e}", out.display())))?;
    let node = match &args.target.node {
        Some(n) => n.clone(),
        None => this_node_name().map_err(|e| CliError::Environment(e.into()))?,
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(out.join(format!("{}-{}.parquet", sanitize(&node), utc_stamp(secs))))
}

/// A node name made safe for a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds (UTC).
fn utc_stamp(secs: u64) -> String {
    // Seconds from the system clock are inside jiff's range (years up to 9999).
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

/// Errors that stop a recording before its probes run (nothing can have been captured).
fn failed_at_start(e: &RecorderError) -> bool {
    matches!(
        e,
        RecorderError::Privileges { .. }
            | RecorderError::MissingBtf(_)
            | RecorderError::Cgroup(_)
            | RecorderError::NotACgroup { .. }
            | RecorderError::NoTarget
            | RecorderError::Config(_)
            | RecorderError::Load(_)
            | RecorderError::Attach { .. }
            | RecorderError::Unsupported(_)
    )
}

fn progress_line(p: &Progress) -> String {
    format!(
        "{:>6.1} s  {:>9.0} events/s  {} events  {} payload bytes  {} file bytes  {} dropped",
        p.elapsed.as_secs_f64(),
        p.events_per_sec,
        p.events,
        p.payload_bytes,
        p.file_bytes,
        p.dropped
    )
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_670_445), "20261126T052045Z");
    }

    #[test]
    fn node_names_become_file_names() {
        assert_eq!(
            sanitize("ip-10-0-1-7.ec2.internal"),
            "ip-10-0-1-7.ec2.internal"
        );
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }
}
