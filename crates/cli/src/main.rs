//! # asdic
//!
//! The command: argument parsing, wiring engine, sender, receiver and analysis together,
//! progress, signals and output. No protocol logic lives here.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]
// Diagnostics never stop a run (`diag`), and nothing panics on the operator's input.
#![deny(
    clippy::print_stderr,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[macro_use]
mod diag;
mod args;
mod closing;
mod dataset;
mod docs;
mod drive;
mod engines;
mod inputs;
mod metrics;
mod output;
mod ping;
mod privilege;
mod recover;
mod report;
mod resume;
mod scan;
mod signals;
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
            say!("asdic: {e}");
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

/// A usage error: the operator asked for something that cannot run.
pub fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
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
            Fail::System(e) => f.write_str(&chain(e)),
        }
    }
}

impl Fail {
    /// A pipeline that could not start: bad input stays a usage error.
    pub fn from_start(e: asdic_runtime::StartError) -> Fail {
        match e {
            asdic_runtime::StartError::Usage(m) => Fail::Usage(m),
            asdic_runtime::StartError::System(e) => Fail::System(e),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail::System(e.into())
    }
}

/// An error and its causes, "outer: inner: …", each said once: a cause whose text the message
/// already ends with (from an error type that prints its source itself) is not repeated.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_failure_names_each_cause_once() {
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        // asdic-analysis prints the OS error in its own message and also gives it as source.
        let file = asdic_analysis::Error::File {
            path: "/x/out.parquet.tmp".into(),
            source: denied(),
        };
        let e = Fail::from(anyhow::Error::new(file).context("writing /x/out.parquet"));
        assert_eq!(
            e.to_string(),
            format!("writing /x/out.parquet: /x/out.parquet.tmp: {}", denied())
        );
        // Causes that do not repeat each other are all said, in order.
        let plain: anyhow::Result<()> = Err(denied()).context("opening");
        let e = Fail::from(plain.context("scan").unwrap_err());
        assert_eq!(e.to_string(), format!("scan: opening: {}", denied()));
        assert_eq!(e.exit_code(), 4);
    }
}
