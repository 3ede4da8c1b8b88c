#!/bin/bash
# Compares two vigil builds on the same hunt, side by side: runs are
# interleaved (A, B, parse-only, B, A, parse-only, …) so that the noise of
# a shared machine hits both alike, and the medians are printed.
#
#   benches/compare-hunt.sh OLD_VIGIL NEW_VIGIL RULES INPUTS [RUNS]
#
# e.g. build the older commit into another target directory first:
#   git worktree add /tmp/old 3583b53 && (cd /tmp/old && cargo build --release)
#   benches/compare-hunt.sh /tmp/old/target/release/vigil target/release/vigil \
#       ../shared/corpus/sigma/rules/windows ../shared/corpus/evtx 15
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n '2,12p' "$0"
    exit 2
fi
a=$1 b=$2 rules=$3 inputs=$4 runs=${5:-11}
out=$(mktemp)
# Each build gets a compiled-rule cache of its own, filled before timing:
# sharing one, each build's run replaces the entry the other remembers for
# these settings, and every hunt then decodes a wrong guess before the
# right entry.
cache_a=$(mktemp -d) cache_b=$(mktemp -d)
trap 'rm -rf "$out" "$cache_a" "$cache_b"' EXIT
VIGIL_CACHE_DIR=$cache_a "$a" hunt --rules "$rules" "$inputs" -f jsonl -q >/dev/null 2>&1 || true
VIGIL_CACHE_DIR=$cache_b "$b" hunt --rules "$rules" "$inputs" -f jsonl -q >/dev/null 2>&1 || true
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
# The order alternates (A B, then B A): whichever runs second after the
# other was measured slower by a few percent on this machine.
for i in $(seq "$runs"); do
    if (( i % 2 )); then first=A second=B; else first=B second=A; fi
    for who in $first $second; do
        if [ "$who" = A ]; then bin=$a cache=$cache_a; else bin=$b cache=$cache_b; fi
        echo "$who-hunt $(VIGIL_CACHE_DIR=$cache ms "$bin" hunt --rules "$rules" "$inputs" -f jsonl -q)" >>"$out"
    done
    echo "B-parse-only $(ms "$b" hunt --parse-only "$inputs" -q)" >>"$out"
done
sort -k1,1 -k2,2n "$out" | awk '
    { v[$1, ++n[$1]] = $2 }
    END {
        for (k in n) {
            m = (n[k] % 2) ? v[k, (n[k] + 1) / 2] : (v[k, n[k] / 2] + v[k, n[k] / 2 + 1]) / 2
            printf "%-14s median %8.1f ms over %d runs\n", k, m / 1000, n[k]
        }
    }' | sort
echo "A = $a"
echo "B = $b"
