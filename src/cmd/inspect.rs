//! `podtrace inspect`: what captures hold, read without their payloads.

use std::process::ExitCode;

use podtrace_format::{inspect, CaptureReader};

use crate::cli::InspectArgs;
use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(args: InspectArgs) -> CmdResult {
    let reader = CaptureReader::open(&args.inputs).map_err(|e| CliError::Input(e.into()))?;
    let summary = inspect(&reader).map_err(|e| CliError::Input(e.into()))?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| CliError::Runtime(e.into()))?;
        println!("{json}");
    } else {
        print!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
