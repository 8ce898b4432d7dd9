# Sourced by the race scripts: the peers they race, as an operator installs them (Debian's
# packages), never built from source here.

# peer NAME VALUE: the peer program to race. VALUE is what its variable says (ZMAP, MASSCAN):
# a path, "none" to leave it out, or empty for Debian's package of NAME (apt-get install
# NAME, installed if missing). Prints its path, or "none"; its version goes to stderr.
peer() {
  local name=$1 p=$2
  if [[ -z $p ]]; then
    command -v "$name" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$name" >/dev/null
    p=$(command -v "$name")
  fi
  if [[ $p != none ]]; then
    [[ -x $p ]] || { echo "$name: $p is not an executable" >&2; return 2; }
    "$p" --version 2>&1 | grep -m1 . >&2 || true
  fi
  echo "$p"
}

# The zmap to race: $ZMAP, else Debian's (2.1.1 on Debian 13).
peer_zmap() { peer zmap "${ZMAP:-}"; }

# The masscan to race: $MASSCAN, else Debian's (1.3.2 on Debian 13). masscan can hang at
# exit: callers wrap it in `timeout`.
peer_masscan() { peer masscan "${MASSCAN:-}"; }
