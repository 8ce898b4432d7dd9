//! The crate graph keeps its one direction (README, "Architecture"): the I/O-free core and
//! what builds on it (analysis, report) carry none of the I/O stack, the sender does not
//! reach into the receiver, and the XDP loader carries none of the responder binary's
//! dependencies. Read from `cargo tree -e normal` (no root, no network: the lock file's
//! crates are already fetched when tests run).

use std::collections::BTreeSet;
use std::process::Command;

/// The normal (non-dev, non-build) dependency closure of `package`, crate names only.
fn tree(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("cargo tree");
    assert!(
        o.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let names: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        names.contains(package),
        "{package} not in its own tree: {names:?}"
    );
    names
}

fn assert_none_of(package: &str, banned: &[&str]) {
    let t = tree(package);
    let found: Vec<&&str> = banned.iter().filter(|b| t.contains(**b)).collect();
    assert!(
        found.is_empty(),
        "{package} depends on {found:?} (cargo tree -e normal -p {package})"
    );
}

const IO_STACK: [&str; 8] = [
    "asdic-engine",
    "asdic-xdp",
    "asdic-receiver",
    "asdic-sender",
    "aya",
    "xsk-rs",
    "libxdp-sys",
    "io-uring",
];

#[test]
fn analysis_and_report_build_without_the_io_stack() {
    assert_none_of("asdic-analysis", &IO_STACK);
    assert_none_of("asdic-report", &IO_STACK);
}

#[test]
fn the_core_depends_on_wire_and_nothing_of_io() {
    assert_none_of("asdic-core", &IO_STACK);
    assert!(tree("asdic-core").contains("asdic-wire"));
    // The engines build on the core's frame type, never the reverse.
    assert!(tree("asdic-engine").contains("asdic-core"));
}

#[test]
fn the_sender_does_not_depend_on_the_receiver() {
    assert_none_of("asdic-sender", &["asdic-receiver"]);
    assert_none_of("asdic-receiver", &["asdic-sender"]);
}

#[test]
fn the_xdp_loader_carries_none_of_the_responder_binary() {
    assert_none_of(
        "asdic-xdp",
        &["clap", "anyhow", "signal-hook", "serde_json"],
    );
    assert_none_of(
        "asdic-engine",
        &["clap", "anyhow", "signal-hook", "serde_json"],
    );
}

/// Every `.rs` file under `dir` (recursively), skipping build output.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The Rust sources under `dirs` of the workspace: (path from the root, text).
fn sources(dirs: &[&str]) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for d in dirs {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// A source's code before its test module.
fn before_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

/// Whether a file is a test (an integration test, a tests module file, an example).
fn is_test_file(rel: &str) -> bool {
    rel.contains("/tests/") || rel.ends_with("tests.rs") || rel.contains("/examples/")
}

/// One runtime drives a run: the sender's and receivers' loops are started by
/// `asdic-runtime` alone, so the binary, the library and the in-memory tests run the same
/// wiring (no copy that can drift).
#[test]
fn only_the_runtime_runs_the_sender_and_receiver_loops() {
    let mut callers = vec![];
    for (rel, text) in sources(&["crates", "tests", "bench", "fuzz", "xdp"]) {
        if rel.starts_with("crates/runtime/src/") || rel == "tests/structure.rs" {
            continue;
        }
        for call in ["tx::run(", "rx::run("] {
            if text.contains(call) {
                callers.push(format!("{rel}: {call}"));
            }
        }
    }
    assert!(callers.is_empty(), "outside crates/runtime: {callers:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let runtime = std::fs::read_to_string(root.join("crates/runtime/src/lib.rs")).unwrap();
    assert!(runtime.contains("tx::run(") && runtime.contains("rx::run("));
}

/// One probe builder: of the product's sources (their test modules and files aside), only the
/// sender's TX loop patches probe templates; the session and the subcommands send through it.
#[test]
fn only_the_sender_builds_probes() {
    let builders: Vec<String> = sources(&["crates", "xdp"])
        .into_iter()
        .filter(|(rel, text)| {
            !rel.starts_with("crates/wire/")
                && !is_test_file(rel)
                && before_tests(text).contains(".patch(")
        })
        .map(|(rel, _)| rel)
        .collect();
    assert_eq!(builders, ["crates/sender/src/tx.rs"]);
}

/// Engines are opened by the runtime (the binary's choice and auto's fallback) and by the
/// session's openers (a library user's choice), nowhere else in the product.
#[test]
fn engines_are_opened_by_the_runtime_and_the_session_only() {
    let openers: std::collections::BTreeSet<String> = sources(&["crates", "xdp"])
        .into_iter()
        .filter(|(rel, text)| {
            !rel.starts_with("crates/engine/")
                && !is_test_file(rel)
                && ["raw::open(", "uring::open(", "xdp::open("]
                    .iter()
                    .any(|c| before_tests(text).contains(c))
        })
        .map(|(rel, _)| rel)
        .collect();
    let expected = [
        "crates/runtime/src/engines.rs",
        "crates/session/src/session.rs",
    ];
    assert_eq!(openers.iter().collect::<Vec<_>>(), expected);
}

/// Whether `needle` occurs in the file at `path`.
fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The fault-injection hooks (`ASDIC_INJECT_*`) are in the hooked test build only: the
/// binary the tests run as the product (`ASDIC_BIN`: the release build in scripts/test) reads
/// none of them, the hooked one (`ASDIC_TEST_BIN` or target/ci/asdic-hooked) does.
#[test]
fn the_product_binary_has_no_fault_hooks() {
    let product = asdic_tests::asdic_bin();
    assert!(
        !file_contains(&product, b"ASDIC_INJECT"),
        "{} reads ASDIC_INJECT_* variables",
        product.display()
    );
    if std::env::var_os("ASDIC_REQUIRE_BED").is_some()
        || std::env::var_os("ASDIC_TEST_BIN").is_some()
    {
        let hooked = asdic_tests::hooked_bin();
        for hook in [
            "ASDIC_INJECT_PANIC",
            "ASDIC_INJECT_RX_STALL_MS",
            "ASDIC_INJECT_RCVBUF",
        ] {
            assert!(
                file_contains(&hooked, hook.as_bytes()),
                "{} lacks {hook}",
                hooked.display()
            );
        }
    }
}

/// A library user builds `asdic-session` without the XDP and io_uring engines (no clang,
/// libbpf or libelf), and the in-memory engine is for tests only.
#[test]
fn the_session_builds_without_xdp_or_io_uring() {
    assert_none_of(
        "asdic-session",
        &[
            "asdic-xdp",
            "aya",
            "aya-obj",
            "xsk-rs",
            "libxdp-sys",
            "io-uring",
        ],
    );
}

/// One rtnetlink stack: only asdic-netlink opens a `NETLINK_ROUTE` socket or defines the
/// netlink message header's constants; the engines and the XDP loader use it.
#[test]
fn one_netlink_stack() {
    let mut elsewhere = vec![];
    for (rel, text) in sources(&["crates", "xdp"]) {
        if rel.starts_with("crates/netlink/") {
            continue;
        }
        for sign in [
            "NETLINK_ROUTE",
            "const NLMSG_ERROR",
            "const NLMSG_HDRLEN",
            "struct RouteSocket",
        ] {
            if text.contains(sign) {
                elsewhere.push(format!("{rel}: {sign}"));
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "netlink outside crates/netlink: {elsewhere:?}"
    );
    assert!(tree("asdic-engine").contains("asdic-netlink"));
    assert!(tree("asdic-xdp").contains("asdic-netlink"));
}
