//! `podtrace` — the command-line front of the podtrace libraries.
//!
//! This binary only parses flags ([`cli`]), resolves them into the libraries' configurations
//! and dispatches to one command module under [`cmd`]; the work lives in the crates
//! `podtrace-format`, `-recorder`, `-import`, `-analyzer` and `-export`.

mod cli;
mod cmd;
mod error;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc: the analysis and its writers are allocation-heavy (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    restore_sigpipe();
    no_transparent_huge_pages();
    lazy_allocator_purge();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Some(Command::Record(args)) => cmd::record::run(args),
        Some(Command::Analyze(args)) => cmd::analyze::run(args),
        Some(Command::Inspect(args)) => cmd::inspect::run(args),
        Some(Command::Import(args)) => cmd::import::run(args),
        Some(Command::Cluster { args }) => cmd::cluster::exec(&args),
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "podtrace", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
        None => cmd::live::run(cli.live),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("podtrace: error: {}", error_chain(&err));
            err.exit_code()
        }
    }
}

/// The error and its causes on one line, each cause only once (many errors already quote
/// their source in their own message).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Opts this process out of transparent huge pages. The analysis allocates and frees
/// hundreds of MB in small pieces; with THP every first touch of fresh memory zeroes a
/// whole 2 MiB page, which was a quarter to half of `analyze`'s CPU time in profiles
/// (tools/bench/README.md). Failure (an old kernel) only costs that speed.
fn no_transparent_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer arguments and touches no
    // memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Has mimalloc give freed memory back lazily: `MADV_FREE` (the kernel takes the pages
/// when it needs memory, and until then a reuse costs nothing) instead of `MADV_DONTNEED`
/// (the pages are unmapped at once and every reuse faults a zeroed page back in). The
/// analysis frees and reallocates its window's memory all the time: on the bench capture
/// replicated 4x, `analyze` took 0.97 M page faults instead of 0.40 M and 12 % more CPU
/// (bench/results.md, session 16). Freed pages still count in the resident size until the
/// kernel takes them, first under memory pressure (a cgroup limit included), before any
/// other memory. `MIMALLOC_PURGE_DECOMMITS` in the environment overrides this.
fn lazy_allocator_purge() {
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some() {
        return;
    }
    // `mi_option_purge_decommits` in mimalloc.h's `mi_option_e` (the same place in v2 and
    // v3; options are only ever appended), which libmimalloc-sys 0.1.49 does not name.
    const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
    // SAFETY: sets one of mimalloc's run-time options (an integer in its option table); the
    // option is read whenever memory is purged, so setting it at start-up is enough.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0);
    }
}

/// Output piped into `head` ends the process quietly, like other Unix tools, instead of a
/// "failed printing to stdout" panic (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default at start-up, before any thread
    // exists, has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr; `-v` raises the level, `RUST_LOG` overrides it entirely.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
