//! `--version`, `asdic man`, `asdic completions` and scripts/install.sh. No root needed.

use std::process::{Command, Output, Stdio};

use asdic_tests::asdic_output as asdic;
use asdic_tests::{asdic_bin, root, scratch};

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

use asdic_tests::SUBCOMMANDS;

#[test]
fn version_names_the_revision_and_the_engines() {
    let long = stdout(&asdic(&["--version"]));
    let first = long.lines().next().unwrap();
    let rev = first
        .strip_prefix(&format!("asdic {} (git ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{first:?}"));
    assert!(
        rev == "unknown" || (rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit())),
        "{rev:?}"
    );
    // Built in this checkout, it is this checkout's HEAD.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output();
    if let Some(h) = head.ok().filter(|h| h.status.success()) {
        let h = String::from_utf8_lossy(&h.stdout).trim().to_string();
        assert_eq!(
            rev, h,
            "rebuild after committing: the binary is from another revision"
        );
    }
    assert!(long.contains("engines: xdp") && long.contains("uring") && long.contains("raw"));
    assert!(long.contains("CAP_NET_RAW") && long.contains("CAP_BPF"));
    assert_eq!(
        stdout(&asdic(&["-V"])).trim(),
        format!("asdic {}", &first[6..])
    );
    assert!(stdout(&asdic(&["scan", "--version"])).starts_with("asdic-scan "));
}

#[test]
fn man_pages_cover_every_subcommand_and_flag() {
    let dir = scratch("man1");
    let listed = stdout(&asdic(&["man", "--dir", dir.to_str().unwrap()]));
    assert_eq!(listed.lines().count(), 1 + SUBCOMMANDS.len(), "{listed}");
    let top = std::fs::read_to_string(dir.join("asdic.1")).unwrap();
    assert!(top.contains(".TH asdic 1"), "{}", &top[..200]);
    for s in SUBCOMMANDS {
        assert!(top.contains(s), "asdic.1 does not mention {s}");
        let page = std::fs::read_to_string(dir.join(format!("asdic-{s}.1"))).unwrap();
        assert!(page.contains(&format!(".TH asdic-{s} 1")), "{s}");
        // Every long flag of the subcommand's --help is on its page.
        let help = stdout(&asdic(&[s, "--help"]));
        // (Aliases, "[alias: --wait]", are not on the pages.)
        for flag in help
            .lines()
            .filter(|l| !l.contains("[alias"))
            .flat_map(str::split_whitespace)
            .filter(|w| w.starts_with("--") && w.len() > 3)
            .map(|w| w.trim_end_matches([',', '.', ')', ':', ']', ';', '"', '\'']))
            .filter(|w| !w.contains(['=', '<', '[']))
        {
            let escaped = flag.replace('-', "\\-");
            assert!(page.contains(&escaped), "asdic-{s}.1 lacks {flag}");
        }
    }
}

#[test]
fn completions_know_the_subcommands_and_survive_a_closed_pipe() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&asdic(&["completions", shell]));
        for s in ["ping", "scan", "sweep", "trace"] {
            assert!(script.contains(s), "{shell} completion lacks {s}");
        }
        assert!(script.contains("sync-every"), "{shell}");
    }
    // `asdic completions bash | head -1`: the reader goes away; no panic, no error.
    let mut child = Command::new(asdic_bin())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.status.success(), "{err}");
    let bad = asdic(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn install_script_puts_binary_pages_and_completions_under_the_prefix() {
    let prefix = scratch("prefix");
    let o = Command::new(root().join("scripts/install.sh"))
        .args([
            "--prefix",
            prefix.to_str().unwrap(),
            "--setcap",
            "none",
            "--bin",
            asdic_bin().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "bin/asdic",
        "share/man/man1/asdic.1",
        "share/man/man1/asdic-sweep.1",
        "share/bash-completion/completions/asdic",
        "share/zsh/site-functions/_asdic",
        "share/fish/vendor_completions.d/asdic.fish",
    ] {
        let p = prefix.join(f);
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 100),
            "{} missing or empty",
            p.display()
        );
    }
    let bad = Command::new(root().join("scripts/install.sh"))
        .args(["--setcap", "everything"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
