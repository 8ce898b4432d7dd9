//! `asdic man` and `asdic completions`: the man pages and shell completions, generated from the
//! clap definitions so they never drift from `--help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use asdic_fs::{Dir, Publish, TempFile};
use clap::CommandFactory;

use crate::Fail;
use crate::args::{Cli, CompletionsArgs, ManArgs};

/// Writes `asdic.1` and `asdic-SUBCOMMAND.1` into `--dir`. Installing replaces the pages
/// of an earlier version: each is renamed over its name (the entry, never a link there).
pub fn man(a: ManArgs) -> Result<ExitCode, Fail> {
    let dir = Dir::create_all(&a.dir).map_err(|e| Fail::Usage(format!("--dir {e}")))?;
    let cmd = Cli::command();
    let mut written = vec![];
    write_page(&cmd, "asdic", &dir, &mut written)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("asdic-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).version(crate::args::VERSION);
        write_page(&sub, &name, &dir, &mut written)?;
    }
    let mut out = std::io::stdout().lock();
    for p in &written {
        if let Err(e) = writeln!(out, "{p}") {
            return stdout_failed(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(
    cmd: &clap::Command,
    name: &str,
    dir: &Dir,
    written: &mut Vec<String>,
) -> Result<(), Fail> {
    let file = format!("{name}.1");
    let mut buf = vec![];
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering {file}"))?;
    let mut t = TempFile::new(dir, file.as_ref())?;
    t.write_all(&buf)
        .with_context(|| format!("writing {}", t.path().display()))?;
    let path = t.publish(Publish::Replace)?;
    written.push(path.display().to_string());
    Ok(())
}

/// A failed write to stdout: a closed pipe ends the listing quietly, anything else is an
/// error.
fn stdout_failed(e: std::io::Error) -> Result<ExitCode, Fail> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Fail::System(
            anyhow::Error::new(e).context("writing to stdout"),
        ))
    }
}

/// Prints the completion script for `shell`.
pub fn completions(a: CompletionsArgs) -> Result<ExitCode, Fail> {
    let mut cmd = Cli::command();
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = vec![];
    clap_complete::generate(a.shell, &mut cmd, "asdic", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) => stdout_failed(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}
