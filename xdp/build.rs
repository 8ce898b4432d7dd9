//! Compiles the XDP programs in `bpf/` with clang for the BPF target into `OUT_DIR`, where
//! `src/lib.rs` embeds them. Needs clang and the kernel UAPI and libbpf helper headers.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 2] = ["filter", "responder"];

const HELP: &str = "install the BPF toolchain with `sudo scripts/deps.sh` \
    (Debian packages: clang, llvm, libbpf-dev, linux-libc-dev)";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let bpf = manifest.join("bpf");
    println!("cargo:rerun-if-changed=bpf/common.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    for p in PROGRAMS {
        println!("cargo:rerun-if-changed=bpf/{p}.bpf.c");
    }

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    if Command::new(&clang).arg("--version").output().is_err() {
        fail(&format!("`{clang}` (clang) was not found"));
    }
    let multiarch = multiarch();
    let arch_include = Path::new("/usr/include").join(&multiarch);
    for header in [
        "/usr/include/bpf/bpf_helpers.h",
        "/usr/include/linux/bpf.h",
        "/usr/include/linux/if_xdp.h",
    ] {
        if !Path::new(header).exists() {
            fail(&format!("{header} is missing"));
        }
    }
    if !arch_include.join("asm/types.h").exists() {
        fail(&format!(
            "{}/asm/types.h is missing",
            arch_include.display()
        ));
    }

    for p in PROGRAMS {
        let src = bpf.join(format!("{p}.bpf.c"));
        let obj = out.join(format!("{p}.bpf.o"));
        let output = Command::new(&clang)
            .args([
                "-O2",
                "-g",
                "-Wall",
                "-target",
                "bpf",
                "-D__TARGET_ARCH_x86",
            ])
            .arg(format!("-I{}", arch_include.display()))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| fail(&format!("running {clang}: {e}")));
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            fail(&format!("clang could not compile {}", src.display()));
        }
    }
}

/// The Debian multiarch triplet (`x86_64-linux-gnu`) whose include directory holds `asm/`.
fn multiarch() -> String {
    for cc in ["gcc", "cc"] {
        if let Ok(o) = Command::new(cc).arg("-print-multiarch").output() {
            let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && !s.is_empty() {
                return s;
            }
        }
    }
    "x86_64-linux-gnu".into()
}

fn fail(what: &str) -> ! {
    eprintln!("error: asdic-xdp cannot build its XDP programs: {what}; {HELP}");
    println!("cargo:warning=asdic-xdp: {what}; {HELP}");
    std::process::exit(1);
}
