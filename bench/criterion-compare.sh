#!/usr/bin/env bash
# The criterion benches (bench/benches: checksums, probe stamping, parse+verify+match, target
# generation) of an earlier commit and of this tree, measured one after the other in one run
# and compared by criterion itself: the earlier commit's results are saved as baseline
# "before" (built in a temporary worktree), then this tree's are measured against it and
# criterion prints each bench's change with its confidence interval. Both builds share
# target/, so only the workspace crates are compiled twice.
#
# usage: bench/criterion-compare.sh COMMIT      (e.g. the commit before a refactor)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/criterion-compare.sh COMMIT}
git rev-parse --verify --quiet "$base^{commit}" >/dev/null || {
  echo "criterion-compare: $base is not a commit" >&2
  exit 2
}
wt=$(mktemp -d /var/tmp/asdic-criterion-base.XXXXXX)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"; git worktree prune' EXIT
git worktree add --detach "$wt" "$base" >/dev/null
export CARGO_TARGET_DIR="$PWD/target"
benches=(--bench hot --bench generate)
echo "== before: $(git log -1 --format='%h %s' "$base" | cut -c1-80)" >&2
(cd "$wt" && cargo bench -p asdic-bench "${benches[@]}" -- --save-baseline before --noplot)
echo "== after: $(git log -1 --format='%h' HEAD) + working tree" >&2
cargo bench -p asdic-bench "${benches[@]}" -- --baseline before --noplot
