//! # asdic
//!
//! The command: argument parsing, wiring engine, sender, receiver and analysis together,
//! progress, signals and output. No protocol logic lives here.
#![forbid(unsafe_code)]

mod args;
mod docs;
mod metrics;
mod ping;
mod pipeline;
mod recover;
mod report;
mod scan;
mod snapshot;
mod sweep;
mod trace;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Ping(a) => ping::run(a),
        args::Command::Scan(a) => scan::run(a),
        args::Command::Sweep(a) => sweep::run(a),
        args::Command::Trace(a) => trace::run(a),
        args::Command::Recover(a) => recover::run(a),
        args::Command::Report(a) => report::run(a),
        args::Command::Man(a) => docs::man(a),
        args::Command::Completions(a) => docs::completions(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("asdic: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// An error that ends the program, with its exit status: 2 for bad input (as clap's own
/// usage errors), 4 for system errors (as fping).
#[derive(Debug)]
pub enum Fail {
    /// Bad input: names the flag or value.
    Usage(String),
    /// Anything else.
    System(anyhow::Error),
}

impl Fail {
    fn exit_code(&self) -> u8 {
        match self {
            Fail::Usage(_) => 2,
            Fail::System(_) => 4,
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Usage(m) => f.write_str(m),
            Fail::System(e) => write!(f, "{e:#}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail::System(e.into())
    }
}
