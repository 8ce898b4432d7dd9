//! Support for asdic's integration tests on the veth test bed (`scripts/bed.sh`): a guard
//! that brings a bed up and always tears it down on drop (also when a test panics), running
//! the built `asdic` binary inside the bed's scanner namespace, and reading results back.
//!
//! The tests need root (network namespaces, raw sockets). Without it they skip with a reason,
//! unless `ASDIC_REQUIRE_BED=1` (set by `scripts/test` and CI), where a missing bed fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arrow_array::{
    Array, Float64Array, Int32Array, RecordBatch, StringArray, UInt8Array, UInt64Array,
};
use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `asdic` binary of the same profile as this test (target/<profile>/asdic).
pub fn asdic_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ASDIC_BIN") {
        return PathBuf::from(p);
    }
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("asdic");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p asdic-cli, same profile)",
        bin.display()
    );
    bin
}

/// Whether the bed can run here; `Err(reason)` if not.
pub fn bed_available() -> Result<(), String> {
    // SAFETY-free check: root is uid 0 as reported by `id -u`.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !ok.is_ok_and(|o| o.status.success()) {
            return Err(format!("{tool} not installed"));
        }
    }
    Ok(())
}

/// Skips the calling test (returns `None`) when no bed can run, or panics when one is required.
pub fn require_bed() -> Option<()> {
    match bed_available() {
        Ok(()) => Some(()),
        Err(why) if std::env::var("ASDIC_REQUIRE_BED").is_ok_and(|v| v == "1") => {
            panic!("the veth test bed is required (ASDIC_REQUIRE_BED=1) but cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: the veth test bed needs root, iproute2 and nftables ({why})");
            None
        }
    }
}

/// A test bed, torn down on drop.
#[derive(Debug)]
pub struct Bed {
    id: String,
}

fn bed_sh() -> PathBuf {
    root().join("scripts/bed.sh")
}

impl Bed {
    /// Brings up bed `id` with extra `up` options (e.g. `["--loss", "10"]`).
    pub fn up(id: &str, opts: &[&str]) -> Bed {
        let bed = Bed { id: id.to_string() };
        let out = Command::new(bed_sh())
            .arg("up")
            .arg(id)
            .args(opts)
            .output()
            .expect("running bed.sh");
        assert!(
            out.status.success(),
            "bed up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bed
    }

    /// The bed's ground truth (rules and live counters).
    pub fn truth(&self) -> Value {
        let out = Command::new(bed_sh())
            .args(["truth", &self.id])
            .output()
            .expect("bed.sh truth");
        assert!(
            out.status.success(),
            "bed truth: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("truth is JSON")
    }

    /// A counter of the ground truth.
    pub fn counter(&self, name: &str) -> u64 {
        self.truth()["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name}"))
    }

    /// Runs `asdic ARGS` in the scanner namespace.
    pub fn asdic(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running asdic")
    }

    /// The command that runs `asdic ARGS` in the scanner namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("asdic-{}-scan", self.id)])
            .arg(asdic_bin())
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command in the scanner namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.exec_in("scan", cmd)
    }

    /// Runs a command in the bed's namespace `role` (`scan`, `rtr` or `far`).
    pub fn exec_in(&self, role: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("asdic-{}-{role}", self.id)])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    /// Adds counter `name` on the router, counting echo requests it forwards to the IPv4
    /// `prefix` (before the router's reject rules).
    pub fn count_forwarded(&self, name: &str, prefix: &str) {
        let rule = format!(
            "insert rule inet asdic_bed forward iifname \"r0\" ip daddr {prefix} icmp type echo-request counter name \"{name}\""
        );
        for cmd in [format!("add counter inet asdic_bed {name}"), rule] {
            let o = self.exec_in("rtr", &["nft", &cmd]);
            assert!(
                o.status.success(),
                "nft {cmd}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Packets counted by the router's counter `name` (see [`Bed::count_forwarded`]).
    pub fn forwarded(&self, name: &str) -> u64 {
        let o = self.exec_in(
            "rtr",
            &["nft", "list", "counter", "inet", "asdic_bed", name],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                return words
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("packets N");
            }
        }
        panic!("no packet count in {text}")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new(bed_sh()).args(["down", &self.id]).output();
    }
}

/// A unique scratch path for an output file.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("asdic-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// Reads an asdic Parquet file into rows keyed by column name, and its key-value metadata.
pub fn read_parquet(path: &Path) -> (Vec<HashMap<String, Value>>, HashMap<String, String>) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("a Parquet file");
    let meta = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = vec![];
    for batch in b.build().expect("reader") {
        let batch: RecordBatch = batch.expect("batch");
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = HashMap::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let col = batch.column(c);
                let v = if col.is_null(i) {
                    Value::Null
                } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<UInt64Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<UInt8Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Int32Array>() {
                    Value::from(a.value(i))
                } else {
                    panic!(
                        "column {} has an unexpected type {}",
                        field.name(),
                        field.data_type()
                    )
                };
                row.insert(field.name().clone(), v);
            }
            rows.push(row);
        }
    }
    (rows, meta)
}

/// Ground-truth class of an address of the bed, from its published rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Answers.
    Alive,
    /// Silently dropped by the far side.
    Dead,
    /// Rejected by the router with an ICMP error.
    Rejected,
}

/// Classifies the low 16 bits `x` of a bed address (198.19.a.b → a*256+b, 2001:db8:1::x → x).
pub fn classify(truth: &Value, v6: bool, x: u32) -> Truth {
    let (m, r) = (
        truth["dead_mod"].as_u64().unwrap() as u32,
        truth["dead_rem"].as_u64().unwrap() as u32,
    );
    let rejected = if v6 {
        (0x4d00..=0x4dff).contains(&x)
    } else {
        x >> 8 == 77
    };
    if rejected {
        Truth::Rejected
    } else if x % m == r {
        Truth::Dead
    } else {
        Truth::Alive
    }
}

/// Whether an address of the bed is IPv6, and its low 16 bits (the host index).
pub fn low16(t: &str) -> (bool, u32) {
    match t.parse::<std::net::IpAddr>().expect("an address") {
        std::net::IpAddr::V4(a) => (false, u32::from(a) & 0xffff),
        std::net::IpAddr::V6(a) => (true, (u128::from(a) & 0xffff) as u32),
    }
}
