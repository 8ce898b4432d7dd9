//! `asdic man` and `asdic completions`: the man pages and shell completions, generated from the
//! clap definitions so they never drift from `--help`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::Fail;
use crate::args::{Cli, CompletionsArgs, ManArgs};

/// Writes `asdic.1` and `asdic-SUBCOMMAND.1` into `--dir`.
pub fn man(a: ManArgs) -> Result<ExitCode, Fail> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| Fail::Usage(format!("--dir {}: {e}", a.dir.display())))?;
    let cmd = Cli::command();
    let mut written = vec![];
    write_page(&cmd, "asdic", &a.dir, &mut written)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("asdic-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).version(crate::args::VERSION);
        write_page(&sub, &name, &a.dir, &mut written)?;
    }
    for p in &written {
        println!("{p}");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<(), Fail> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = vec![];
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering {name}.1"))?;
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.display().to_string());
    Ok(())
}

/// Prints the completion script for `shell`.
pub fn completions(a: CompletionsArgs) -> Result<ExitCode, Fail> {
    let mut cmd = Cli::command();
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = vec![];
    clap_complete::generate(a.shell, &mut cmd, "asdic", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Fail::System(
            anyhow::Error::new(e).context("writing to stdout"),
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}
