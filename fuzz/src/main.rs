//! `asdic-fuzz`: runs the fuzz targets of `asdic_fuzz` for a time or a number of inputs and
//! saves any input that panics or breaks an oracle under `fuzz/crashes/`.
//!
//! usage: asdic-fuzz [--target NAME|all] [--seconds S] [--iterations N] [--seed X]
//!                   [--corpus DIR] [--crashes DIR]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use asdic_fuzz::{Budget, Target, load_corpus, run};

fn main() -> ExitCode {
    let mut targets = Target::ALL.to_vec();
    let mut budget = Budget {
        iterations: u64::MAX,
        time: Duration::from_secs(10),
    };
    let mut seed = 1u64;
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = here.join("corpus");
    let mut crashes = here.join("crashes");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--target" => {
                let v = value();
                if v != "all" {
                    match Target::parse(&v) {
                        Some(t) => targets = vec![t],
                        None => return usage(&format!("unknown target {v:?}")),
                    }
                }
            }
            "--seconds" => match value().parse::<f64>() {
                Ok(s) if s > 0.0 => budget.time = Duration::from_secs_f64(s),
                _ => return usage("--seconds wants a positive number"),
            },
            "--iterations" => match value().parse() {
                Ok(n) => budget.iterations = n,
                Err(_) => return usage("--iterations wants a count"),
            },
            "--seed" => match value().parse() {
                Ok(s) => seed = s,
                Err(_) => return usage("--seed wants a number"),
            },
            "--corpus" => corpus = PathBuf::from(value()),
            "--crashes" => crashes = PathBuf::from(value()),
            "-h" | "--help" => {
                println!(
                    "usage: asdic-fuzz [--target frame|payload|matcher|targets|fleet|all] \
                     [--seconds S (default 10, per target)] [--iterations N] [--seed X] \
                     [--corpus DIR] [--crashes DIR]"
                );
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let mut failed = false;
    println!(
        "{:<8} {:>7} {:>12} {:>9} {:>12} {:>8}",
        "target", "seeds", "inputs", "seconds", "inputs/s", "failures"
    );
    for t in targets {
        let seeds = match load_corpus(&corpus, t) {
            Ok(s) => s,
            Err(e) => return usage(&format!("{}: {e}", corpus.display())),
        };
        let r = run(t, &seeds, budget, seed);
        println!(
            "{:<8} {:>7} {:>12} {:>9.1} {:>12.0} {:>8}",
            t.name(),
            r.seeds,
            r.execs,
            r.secs,
            r.execs as f64 / r.secs.max(1e-9),
            r.failures.len()
        );
        for (k, v) in &r.counts {
            println!("         {k}: {v}");
        }
        for (i, (input, why)) in r.failures.iter().enumerate() {
            failed = true;
            let _ = std::fs::create_dir_all(&crashes);
            let path = crashes.join(format!("{}-{seed}-{i}.bin", t.name()));
            let _ = std::fs::write(&path, input);
            eprintln!(
                "asdic-fuzz: {}: {why}; input saved to {}",
                t.name(),
                path.display()
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("asdic-fuzz: {msg} (see --help)");
    ExitCode::from(2)
}
