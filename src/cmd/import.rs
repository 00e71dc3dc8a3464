//! `podtrace import`: a pcap/pcapng packet capture into a podtrace capture.

use std::process::ExitCode;

use podtrace_import::{import, ImportError, ImportOptions, View};

use crate::cli::{ImportArgs, ViewArg};
use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(args: ImportArgs) -> CmdResult {
    let opts = ImportOptions {
        view: match args.view {
            ViewArg::Client => View::Client,
            ViewArg::Server => View::Server,
            ViewArg::Both => View::Both,
        },
        k8s_objects: args.k8s_objects,
        node: args.node,
        ..ImportOptions::default()
    };
    let summary = import(&args.input, &args.output, &opts).map_err(|e| match e {
        ImportError::Format(_) => CliError::Runtime(e.into()),
        other => CliError::Input(other.into()),
    })?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| CliError::Runtime(e.into()))?;
        println!("{json}");
    } else {
        println!("{summary}");
        println!("wrote {}", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}
