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
