# Sourced by the race scripts: the peers they race, as an operator installs them (Debian's
# packages), never built from source here.

# The zmap to race: $ZMAP if set ("none": leave zmap out), else Debian's (apt-get install
# zmap, 2.1.1 on Debian 13). Prints its path, or "none"; its version goes to stderr.
peer_zmap() {
  local z=${ZMAP:-}
  if [[ -z $z ]]; then
    command -v zmap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zmap >/dev/null
    z=$(command -v zmap)
  fi
  if [[ $z != none ]]; then
    [[ -x $z ]] || { echo "ZMAP=$z is not an executable" >&2; return 2; }
    "$z" --version 2>&1 | head -1 >&2
  fi
  echo "$z"
}

# The masscan to race: $MASSCAN if set ("none": leave it out), else Debian's (apt-get install
# masscan, 1.3.2 on Debian 13). Prints its path, or "none"; its version goes to stderr.
# masscan can hang at exit: callers wrap it in `timeout`.
peer_masscan() {
  local m=${MASSCAN:-}
  if [[ -z $m ]]; then
    command -v masscan >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq masscan >/dev/null
    m=$(command -v masscan)
  fi
  if [[ $m != none ]]; then
    [[ -x $m ]] || { echo "MASSCAN=$m is not an executable" >&2; return 2; }
    "$m" --version 2>&1 | grep -m1 -i version >&2
  fi
  echo "$m"
}
