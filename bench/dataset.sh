#!/usr/bin/env bash
# How large a scan dataset gets per million probes, and how long Spark, DuckDB, DataFusion
# and pyarrow take to query it. Scans the accuracy bed's /16 RUNS times (default 16: 1,048,576 probes) into one
# dataset (asdic scan --dataset, one run each, --all-events so that every probe is a row;
# and once more without it, hits only), then runs tests/support/dataset_query.py over it:
# the README's queries (live hosts, rejected targets, loss per /24, rows per shard) in Spark
# SQL (local mode, 2 threads), DuckDB, DataFusion and pyarrow (compute). Prints rows, bytes, MB per million probes and each
# engine's query time (reading included, Spark's session start not).
#
# usage: sudo bench/dataset.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -p asdic-cli >&2
runs=${1:-16}
id=ds$$
work=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/bed.sh up "$id" >/dev/null
scan() { # dataset run-id [flags]
  local dir=$1 run=$2
  shift 2
  ip netns exec "asdic-$id-scan" "$target/asdic" scan 198.19.0.0/16 --no-default-blocklist \
    -R 10000000 --cooldown 1 --seed 1 -q --dataset "$dir" --run-id "$run" "$@" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
}
for i in $(seq -w 0 $((runs - 1))); do
  scan "$work/all" "r$i" --all-events
done
scan "$work/hits" hits
rows=$((runs * 65536))
size() { find "$1" -name 'part-*.parquet' -printf '%s\n' | awk '{ s += $1 } END { print s }'; }
all=$(size "$work/all")
hits=$(size "$work/hits")
count() { # rows of a dataset
  python3 - "$1" <<'PY'
import sys
import duckdb
print(duckdb.sql(f"SELECT count(*) FROM read_parquet('{sys.argv[1]}/**/*.parquet')").fetchone()[0])
PY
}
hit_rows=$(count "$work/hits")
# One schema version per query: its partitions (schema_version=2/run=…/shard=…).
q=$(python3 tests/support/dataset_query.py "$work/all/schema_version=2" | tail -1)
spark=$(sed -n 's/.*"spark_s": \([0-9.]*\).*/\1/p' <<<"$q")
duck=$(sed -n 's/.*"duckdb_s": \([0-9.]*\).*/\1/p' <<<"$q")
fusion=$(sed -n 's/.*"datafusion_s": \([0-9.]*\).*/\1/p' <<<"$q")
arrow=$(sed -n 's/.*"pyarrow_s": \([0-9.]*\).*/\1/p' <<<"$q")
awk -v r="$rows" -v a="$all" -v h="$hits" -v hr="$hit_rows" -v n="$runs" -v s="$spark" -v d="$duck" \
  -v f="$fusion" -v p="$arrow" 'BEGIN {
  printf "dataset, --all-events: %d runs, %d probes = rows, %d bytes: %.1f MB per million probes\n", n, r, a, a / r
  printf "dataset, hits only: one run of 65536 probes, %d hit rows, %d bytes: %.1f MB per million probes, %.1f bytes a row\n", hr, h, h / 65536, h / hr
  printf "queries over the %d-row dataset: Spark SQL %.2f s, DuckDB %.3f s, DataFusion %.3f s, pyarrow %.3f s\n", r, s, d, f, p }'
