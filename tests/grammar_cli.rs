//! One grammar for every subcommand, read from what a user reads: each subcommand's `--help`.
//! The gate every new flag passes: a letter means one thing everywhere, the concepts ping,
//! fping and traceroute users know take their letters, retired letters are refused naming
//! their new spelling, and a bare number in a duration flag is never read as milliseconds.
//! No root needed.

use asdic_tests::asdic_output as asdic;
use std::collections::BTreeMap;

const PROBING: [&str; 4] = ["ping", "scan", "sweep", "trace"];
const ALL: [&str; 8] = asdic_tests::SUBCOMMANDS;

/// The shared vocabulary: a concept's long flag and its letter, wherever a subcommand has it.
const SHARED: [(&str, char); 11] = [
    ("--count", 'c'),
    ("--interval", 'i'),
    ("--timeout", 'W'),
    ("--ttl", 't'),
    ("--interface", 'I'),
    ("--file", 'f'),
    ("--size", 's'),
    ("--quiet", 'q'),
    ("--rate", 'R'),
    ("--format", 'O'),
    ("--output", 'o'),
];

/// Concepts a subcommand has without the shared letter for this release only: the letter
/// was zmap's in scan until 0.2, and a reassigned letter is refused for one release.
const WITHOUT_LETTER_FOR_ONE_RELEASE: [(&str, &str); 2] =
    [("scan", "--ttl"), ("scan", "--interface")];

/// Letters retired in 0.2: (subcommand, arguments, the new spelling the refusal names).
const RETIRED: [(&str, &[&str], &str); 10] = [
    ("scan", &["198.19.0.0/24", "-r", "1000"], "-R or --rate"),
    ("scan", &["-I", "list.txt"], "-f or --file"),
    ("scan", &["198.19.0.0/24", "-i", "eth0"], "--interface"),
    ("scan", &["198.19.0.0/24", "-c", "8"], "--cooldown"),
    ("scan", &["198.19.0.0/24", "-t", "60"], "--max-runtime"),
    ("scan", &["198.19.0.0/24", "-n", "10"], "--max-targets"),
    ("scan", &["198.19.0.0/24", "-e", "7"], "--seed"),
    (
        "scan",
        &["198.19.0.0/24", "-w", "allow.txt"],
        "--allowlist-file",
    ),
    ("trace", &["198.19.0.1", "-e", "7"], "--seed"),
    ("sweep", &["fleet.txt", "-e", "5s"], "-i or --interval"),
];

/// Duration flags whose bare number is seconds (zmap's, unchanged); every other duration flag
/// refuses a bare number for this release (it was milliseconds).
const BARE_SECONDS: [(&str, &str); 2] = [("scan", "--cooldown"), ("scan", "--max-runtime")];

/// A subcommand's options as its `--help` shows them: long flag → (letter, value name).
fn options(sub: &str) -> BTreeMap<String, (Option<char>, Option<String>)> {
    let o = asdic(&[sub, "--help"]);
    assert!(o.status.success(), "asdic {sub} --help");
    let text = String::from_utf8(o.stdout).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let t = line.trim_start();
        // "-f, --file <FILE>" or "--max-targets <N|P%>": an option's first line.
        if line.len() - t.len() < 2 || !t.starts_with('-') {
            continue;
        }
        let (short, rest) = match t.strip_prefix('-').and_then(|r| r.split_once(", ")) {
            Some((s, rest)) if s.len() == 1 => (s.chars().next(), rest),
            _ => (None, t),
        };
        let mut words = rest.split_whitespace();
        let Some(long) = words.next().filter(|l| l.starts_with("--")) else {
            continue;
        };
        let value = words
            .next()
            .map(|v| v.trim_matches(['<', '>', '[', ']', '.']).to_string());
        out.insert(long.to_string(), (short, value));
    }
    assert!(out.contains_key("--help"), "{sub}: no options read");
    out
}

#[test]
fn a_letter_means_one_thing_in_every_subcommand() {
    let mut meaning: BTreeMap<char, (String, &str)> = BTreeMap::new();
    for sub in ALL {
        for (long, (short, _)) in options(sub) {
            let Some(c) = short else { continue };
            match meaning.get(&c) {
                Some((other, where_)) => assert_eq!(
                    &long, other,
                    "-{c} is {long} in {sub} but {other} in {where_}"
                ),
                None => {
                    meaning.insert(c, (long, sub));
                }
            }
        }
    }
    // The shared letters are in use (the table is not vacuous).
    for (long, c) in SHARED {
        assert_eq!(
            meaning.get(&c).map(|m| m.0.as_str()),
            Some(long),
            "-{c} is not {long} anywhere"
        );
    }
}

#[test]
fn shared_concepts_take_the_letters_ping_and_traceroute_users_know() {
    let mut checked = 0;
    for sub in PROBING {
        let opts = options(sub);
        for (long, c) in SHARED {
            let Some((short, _)) = opts.get(long) else {
                continue;
            };
            if WITHOUT_LETTER_FOR_ONE_RELEASE.contains(&(sub, long)) {
                assert_eq!(
                    *short, None,
                    "{sub} {long}: its letter is retired this release"
                );
            } else {
                assert_eq!(*short, Some(c), "{sub} {long} should be -{c}");
            }
            checked += 1;
        }
        // Every probing subcommand has these.
        for long in ["--timeout", "--rate", "--size", "--quiet", "--interface"] {
            let long = if sub == "scan" && long == "--timeout" {
                "--cooldown" // a stateless scan's only wait
            } else {
                long
            };
            assert!(opts.contains_key(long), "{sub} lacks {long}");
        }
    }
    assert!(checked >= 30, "{checked}");
}

#[test]
fn retired_letters_are_refused_with_the_new_spelling() {
    for (sub, args, now) in RETIRED {
        let mut all = vec![sub];
        all.extend_from_slice(args);
        let o = asdic(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {err}");
        assert!(
            err.contains("retired") && err.contains(now),
            "{all:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{all:?}");
        // Nor is the letter listed in --help.
        let letter = args.iter().find(|a| a.len() == 2 && a.starts_with('-'));
        let c = letter.unwrap().chars().nth(1).unwrap();
        assert!(
            options(sub).values().all(|(s, _)| *s != Some(c)),
            "{sub} --help still lists -{c}"
        );
    }
}

#[test]
fn a_bare_number_in_a_duration_is_never_read_as_milliseconds() {
    let mut checked = 0;
    for sub in PROBING {
        for (long, (_, value)) in options(sub) {
            if value.as_deref() != Some("DURATION") {
                continue;
            }
            // Parsed before --help acts: a refused value fails, an accepted one shows help.
            let bare = asdic(&[sub, &long, "3", "--help"]);
            let err = String::from_utf8_lossy(&bare.stderr);
            if BARE_SECONDS.contains(&(sub, long.as_str())) {
                assert!(bare.status.success(), "{sub} {long} 3: {err}");
            } else {
                assert_eq!(bare.status.code(), Some(2), "{sub} {long} 3 was accepted");
                assert!(err.contains("write 3s or 3ms"), "{sub} {long}: {err}");
            }
            for ok in ["3s", "250ms"] {
                let o = asdic(&[sub, &long, ok, "--help"]);
                assert!(o.status.success(), "{sub} {long} {ok}");
            }
            checked += 1;
        }
    }
    // ping -i -W --sync-every; scan --max-runtime --cooldown --sync-every; sweep's seven;
    // trace -W --sync-every.
    assert!(checked >= 14, "{checked} duration flags");
}

/// The README's vocabulary table: per row, its long flags and its cells for ping, trace,
/// sweep and scan.
fn readme_table() -> Vec<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(asdic_tests::root().join("README.md")).unwrap();
    let start = text
        .find("### One vocabulary")
        .expect("README: no vocabulary section");
    let mut rows = vec![];
    for line in text[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| flag | ping | trace | sweep | scan |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        // "\|" inside a cell is a literal bar.
        let cells: Vec<String> = line
            .replace("\\|", "¦")
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let longs = cells[1]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--"))
            .map(str::to_string)
            .collect();
        rows.push((longs, cells[2..6].to_vec()));
    }
    rows
}

#[test]
fn the_readme_table_lists_every_flag_of_every_subcommand() {
    let rows = readme_table();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    for (col, sub) in ["ping", "trace", "sweep", "scan"].into_iter().enumerate() {
        let opts = options(sub);
        for long in opts
            .keys()
            .filter(|l| !["--help", "--version"].contains(&l.as_str()))
        {
            let row = rows.iter().find(|(longs, _)| longs.contains(long));
            let Some((_, cells)) = row else {
                panic!("README table lacks {long} ({sub})")
            };
            assert_ne!(cells[col], "—", "README: {sub} {long} marked absent");
        }
        for (longs, cells) in &rows {
            if cells[col] != "—" {
                for long in longs {
                    assert!(opts.contains_key(long), "README: {sub} has no {long}");
                }
            }
        }
    }
}

/// Runs `asdic ARGS`, expecting a usage error (exit 2, nothing on stdout): its stderr.
fn refused(args: &[&str]) -> String {
    let o = asdic(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(o.stdout.is_empty(), "{args:?}");
    err
}

#[test]
fn small_refusals_say_what_is_wrong() {
    // A rate too high is not "not positive".
    let e = refused(&["ping", "198.19.0.1", "--rate", "1000000000000"]);
    assert!(e.contains("at most 100000000 probes per second"), "{e}");
    // TTL 0 and 256: the same range named.
    for sub in [
        &["ping", "198.19.0.1", "-t"][..],
        &["scan", "x", "--ttl"],
        &["sweep", "f", "-t"],
        &["trace", "x", "-m"],
    ] {
        for bad in ["0", "256"] {
            let mut args = sub.to_vec();
            args.push(bad);
            let e = refused(&args);
            assert!(e.contains("a TTL is 1..=255"), "{args:?}: {e}");
        }
    }
    // ::/0 holds 2^128 addresses, not 2^128 - 1.
    let e = refused(&["ping", "::/0"]);
    assert!(e.contains("2^128 or more") && !e.contains("211455"), "{e}");
    // Host bits and duplicates are said (here before a refused --size: nothing is sent).
    let e = refused(&["ping", "198.19.0.1/30", "198.19.0.2", "--size", "10"]);
    assert!(
        e.contains("host bits set in 198.19.0.1/30 is 198.19.0.0/30")
            && e.contains("1 duplicate address merged"),
        "{e}"
    );
    // --fields names the columns there are, and only for the text formats.
    let scan_with = |more: &[&str]| {
        let mut args = vec![
            "scan",
            "198.19.0.0/24",
            "--no-default-blocklist",
            "-R",
            "10",
        ];
        args.extend_from_slice(more);
        refused(&args)
    };
    let e = scan_with(&["--fields", "saddr"]);
    assert!(
        e.contains("--fields: \"saddr\" is not a column (columns: target,"),
        "{e}"
    );
    let out = asdic_tests::scratch("grammar-fields.parquet");
    let e = scan_with(&["--fields", "target", "-o", out.to_str().unwrap()]);
    assert!(e.contains("Parquet holds every column"), "{e}");
    assert!(!out.exists(), "nothing written");
    // An empty allowlist is named, and 0.0.0.0/0 is not blamed on 0.0.0.0/8.
    let scan_allowing = |name: &str, list: &str| {
        let file = asdic_tests::scratch(name);
        std::fs::write(&file, list).unwrap();
        let f = file.to_str().unwrap();
        refused(&[
            "scan",
            "0.0.0.0/0",
            "-R",
            "10",
            "--dry-run",
            "--allowlist-file",
            f,
        ])
    };
    let e = scan_allowing("grammar-empty-allow.txt", "# nothing\n");
    assert!(e.contains("holds no address"), "{e}");
    let e = scan_allowing("grammar-private-allow.txt", "10.0.0.0/8\n");
    assert!(
        e.contains("every target is blocklisted or outside the allowlist")
            && !e.contains("0.0.0.0/8"),
        "{e}"
    );
}
