#!/usr/bin/env bash
# Installs asdic: the binary, its man pages and shell completions (generated from the clap
# definitions by the binary itself), and optionally the file capabilities that let users
# without root run it.
#
#   sudo scripts/install.sh                      # to /usr/local, with the XDP engine's capabilities
#   sudo scripts/install.sh --setcap raw         # only CAP_NET_RAW (raw and uring engines)
#   scripts/install.sh --prefix ~/.local --setcap none --no-build
#   scripts/install.sh --prefix /opt/asdic --bin target/ci/asdic   # a binary built elsewhere
#
# --setcap xdp grants cap_net_raw,cap_net_admin,cap_bpf,cap_perfmon,cap_ipc_lock (see the
# README's "Without root"); asdic drops them all once its engines are open.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
setcap_set=xdp
build=1
bin=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --setcap) setcap_set="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --bin) bin="$2"; build=0; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$setcap_set" in
    xdp) caps=cap_net_raw,cap_net_admin,cap_bpf,cap_perfmon,cap_ipc_lock ;;
    raw) caps=cap_net_raw ;;
    none) caps= ;;
    *) echo "install.sh: --setcap takes xdp, raw or none" >&2; exit 2 ;;
esac

if [ "$build" = 1 ]; then
    cargo build --release --locked -p asdic-cli
fi
bin="${bin:-${CARGO_TARGET_DIR:-target}/release/asdic}"
[ -x "$bin" ] || { echo "install.sh: $bin is missing: build first (or drop --no-build)" >&2; exit 1; }

install -d "$prefix/bin" "$prefix/share/man/man1" \
    "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions" \
    "$prefix/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$prefix/bin/asdic"
"$prefix/bin/asdic" man --dir "$prefix/share/man/man1" >/dev/null
"$prefix/bin/asdic" completions bash > "$prefix/share/bash-completion/completions/asdic"
"$prefix/bin/asdic" completions zsh > "$prefix/share/zsh/site-functions/_asdic"
"$prefix/bin/asdic" completions fish > "$prefix/share/fish/vendor_completions.d/asdic.fish"
if [ -n "$caps" ]; then
    setcap "$caps+ep" "$prefix/bin/asdic"
    echo "install.sh: $prefix/bin/asdic has $caps"
fi
echo "install.sh: installed $("$prefix/bin/asdic" -V) to $prefix"
