//! The deployment examples in docs/ (a Kubernetes Indexed Job and a Slurm array for sharded
//! scans, a DaemonSet for sweep agents): every asdic flag they pass exists in that
//! subcommand's `--help`. No root needed.

use std::process::{Command, Stdio};

use asdic_tests::{asdic_bin, root};

/// The asdic command lines of a docs file: (subcommand, arguments).
fn commands(file: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("docs").join(file)).unwrap();
    let mut out = vec![];
    if file.ends_with(".yaml") {
        // A container's `args:` list, one item per line.
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            if l.trim() != "args:" {
                continue;
            }
            let mut args = vec![];
            while let Some(item) = lines.peek().and_then(|l| l.trim().strip_prefix("- ")) {
                args.push(item.trim_matches('"').to_string());
                lines.next();
            }
            out.push((args[0].clone(), args[1..].to_vec()));
        }
    } else {
        // `asdic SUB ...` with backslash continuations.
        let joined = text.replace("\\\n", " ");
        for l in joined.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let words: Vec<&str> = l.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "asdic") {
                // Words as the shell passes them: without their double quotes.
                let rest: Vec<String> = words[i + 1..]
                    .iter()
                    .map(|s| s.trim_matches('"').to_string())
                    .collect();
                if let Some((sub, args)) = rest.split_first() {
                    out.push((sub.clone(), args.to_vec()));
                }
            }
        }
    }
    out
}

fn help(sub: &str) -> String {
    let o = Command::new(asdic_bin())
        .args([sub, "--help"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "asdic {sub} --help");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn every_flag_in_the_deployment_examples_exists() {
    let mut checked = 0;
    for file in [
        "scan-indexed-job.yaml",
        "scan-slurm-array.sh",
        "sweep-daemonset.yaml",
    ] {
        let cmds = commands(file);
        assert!(!cmds.is_empty(), "{file}: no asdic command found");
        for (sub, args) in cmds {
            let h = help(&sub);
            for a in args.iter().filter(|a| a.starts_with('-')) {
                // As a whole option name: "--shard" must not pass on "--shards".
                let found = h.match_indices(a.as_str()).any(|(i, _)| {
                    h[i + a.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
                });
                assert!(found, "{file}: asdic {sub} has no option {a}");
                checked += 1;
            }
            // The job runners' shard index is taken from the environment, so that a retry
            // resumes its shard (never opted out of here), as the file says.
            if sub == "scan" {
                let i = args.iter().position(|a| a == "--shard").unwrap();
                assert_eq!(args[i + 1], "env", "{file}");
                assert!(!args.iter().any(|a| a == "--no-auto-resume"), "{file}");
                let text = std::fs::read_to_string(root().join("docs").join(file)).unwrap();
                assert!(
                    text.contains("resume") && text.contains("lock") && text.contains("exits 0"),
                    "{file}: says how a retry resumes, the lock and a finished shard"
                );
                assert!(help("scan").contains("--no-auto-resume"));
            }
        }
    }
    assert!(checked >= 25, "{checked} flags checked");
}

#[test]
fn the_examples_parse_as_asdic_parses_them() {
    // Each scan command line, with its shard from the environment, is refused only for what
    // a test machine lacks (the targets are the default blocklist's or need a real network):
    // never for a flag or a value.
    for file in ["scan-indexed-job.yaml", "scan-slurm-array.sh"] {
        for (sub, mut args) in commands(file) {
            // Resolve the shell's variable as Slurm would; count instead of scanning.
            for a in args.iter_mut() {
                *a = a.replace("$SLURM_ARRAY_JOB_ID", "4711");
            }
            // A dry run writes no results (it refuses -o and --dataset): drop the outputs.
            let mut kept = vec![];
            let mut it = args.into_iter();
            while let Some(a) = it.next() {
                if ["--dataset", "--run-id", "-o", "--output"].contains(&a.as_str()) {
                    it.next();
                } else if !a.starts_with("--dataset=") && !a.starts_with("--run-id=") {
                    kept.push(a);
                }
            }
            args = kept;
            args.push("--dry-run".into());
            args.push("--max-targets".into());
            args.push("10".into());
            let o = Command::new(asdic_bin())
                .arg(&sub)
                .args(&args)
                .env("JOB_COMPLETION_INDEX", "3")
                .env("SLURM_ARRAY_TASK_ID", "3")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{file}: {err}");
            assert!(
                err.contains("dry run: 10 targets (shard 3 of 8"),
                "{file}: {err}"
            );
        }
    }
}
