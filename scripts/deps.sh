#!/usr/bin/env bash
# Installs what asdic's build, test bed and tests need on a fresh Debian machine.
# Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v setpriv >/dev/null || need+=(util-linux)
command -v prlimit >/dev/null || need+=(util-linux)
# tests/privilege_bed.rs gives a copy of asdic file capabilities.
command -v setcap >/dev/null || need+=(libcap2-bin)
command -v cc >/dev/null || need+=(gcc)
# tests/hostile_bed.rs runs its hostile peer (tests/support/hostile.py) with python3.
command -v python3 >/dev/null || need+=(python3)
command -v ethtool >/dev/null || need+=(ethtool)
# tests/rtt_truth_bed.rs (and bench/rtt-truth.sh) capture the bed's router link with
# nanosecond stamps: the wire RTTs asdic's are checked against.
command -v tcpdump >/dev/null || need+=(tcpdump)
# The XDP programs (xdp/) are compiled with clang -target bpf against the kernel's UAPI and
# libbpf's helper headers; xsk-rs's libxdp-sys builds libxdp from source (libelf, zlib, m4,
# pkg-config, llvm's tools).
command -v clang >/dev/null || need+=(clang)
command -v llc >/dev/null || need+=(llvm)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v m4 >/dev/null || need+=(m4)
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -e /usr/include/linux/if_xdp.h ] || need+=(linux-libc-dev)
# asdic report lays out its figures' text with a TrueType font.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# tests/metrics_bed.rs checks the sweep's scrapes with promtool and has a Prometheus server
# query them: both come with Debian's prometheus package (installed without its recommended
# node exporter).
bare=()
{ command -v promtool && command -v prometheus; } >/dev/null || bare+=(prometheus)
# tests/dataset_bed.rs queries a scan dataset with Spark (pyspark runs on a JVM) and DuckDB.
command -v java >/dev/null || bare+=(default-jre-headless)
if ((${#need[@]} + ${#bare[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]} ${bare[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]} ${bare[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ((${#need[@]})); then
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ((${#bare[@]})); then
    apt-get install -y -qq --no-install-recommends "${bare[@]}" >/dev/null
    # The package starts a Prometheus service where systemd runs; the tests run their own
    # (inside the bed's namespaces), so the one just installed is stopped and disabled.
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
fi
# ... and the Python packages of those engines (tests/support/requirements.txt), from PyPI.
if ! python3 -c 'import pyspark, duckdb, datafusion, pyarrow, pytz' 2>/dev/null; then
  echo "deps: installing tests/support/requirements.txt (pyspark, duckdb, datafusion, pyarrow, pytz)" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r "$(dirname "$0")/../tests/support/requirements.txt" >/dev/null
fi
# libxdp's dispatcher and pinned objects want bpffs.
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "deps: could not mount bpffs at /sys/fs/bpf" >&2
fi
command -v cargo >/dev/null || { echo "deps: cargo (Rust toolchain) is required" >&2; exit 1; }
