//! The `image-registry` binary: parses the command line and runs it (see `image_registry::cli`).

#![forbid(unsafe_code)]

use clap::Parser;
use image_registry::cli::{run, Cli};

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-registry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
