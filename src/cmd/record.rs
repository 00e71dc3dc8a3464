//! `podtrace record`: a pod's (or cgroup's, or process's) socket traffic and the cluster's
//! metadata into a capture file, until Ctrl-C, SIGTERM or a limit.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use podtrace_format::WriterOptions;
use podtrace_recorder::{record_to_file, Progress, RecorderError};

use crate::cli::RecordArgs;
use crate::cmd::target::{self, recorder_error, shutdown_signal};
use crate::error::CmdResult;

/// Runs the command.
pub fn run(args: RecordArgs) -> CmdResult {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut target = target::resolve(args.pod.as_deref(), &args.target).await?;
        let mut config = target.config.clone();
        config.limits.max_size = args.max_size;
        let existed = args.output.exists();
        let bar = spinner();
        let label = format!(
            "{} into {}",
            config.target_label,
            args.output.display()
        );
        let mut attached = false;
        let result = record_to_file(
            config,
            &args.output,
            WriterOptions::default(),
            target.k8s_rows.take(),
            shutdown_signal(),
            |p: &Progress| {
                if !attached {
                    // The first progress report comes from a running recorder: tell scripts
                    // and people that traffic from now on is captured.
                    attached = true;
                    bar.suspend(|| eprintln!("podtrace: probes attached, recording {label} (Ctrl-C to stop)"));
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
                    let _ = std::fs::remove_file(&args.output);
                    let _ = std::fs::remove_file(podtrace_format::sidecar_path(&args.output));
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
        Ok(ExitCode::SUCCESS)
    })
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
