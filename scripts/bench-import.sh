#!/usr/bin/env bash
# Bulk import through the real CLI: time and peak memory (GNU time's "Maximum resident set
# size") of `mamori import` of a synthetic customers CSV into a fresh data directory, vs the
# plain-SQLite baseline (`plain_import`: the same parsed rows, 9 TEXT columns, one
# transaction, one prepared statement, WAL + synchronous=FULL) measured the same way, in the
# same run. Prints a markdown table. Synthetic data only (mamori_synth, seed 2026).
#
# Usage: scripts/bench-import.sh [ROWS]        (default 1000000)
# Env:   CARGO_TARGET_DIR (default ./target), TMPDIR (work files; several GB at 1M rows)
set -euo pipefail

ROWS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
TIME=/usr/bin/time
[[ -x $TIME ]] || { echo "GNU time is needed: apt-get install -y time" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed: apt-get install -y jq" >&2; exit 1; }

(cd "$ROOT" && cargo build --release --quiet -p mamori -p mamori-bench)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mamori-bench-import.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/input" "$WORK/plain"
CSV=$WORK/input/customers.csv # outside the data directory
"$BIN/gen_csv" "$ROWS" 2026 "$CSV"
CSV_MIB=$(( $(stat -c %s "$CSV") / 1048576 ))

# Field N of a GNU time -v report.
field() { sed -n "s/^[[:space:]]*$1: //p" "$2"; }
# h:mm:ss or m:ss.ss → seconds
seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"; }

# Baseline.
"$TIME" -v -o "$WORK/plain.time" "$BIN/plain_import" "$CSV" "$WORK/plain/plain.db" >"$WORK/plain.json"
PLAIN_RPS=$(jq -r .rows_per_second "$WORK/plain.json")
PLAIN_S=$(jq -r .seconds "$WORK/plain.json")
PLAIN_RSS=$(field "Maximum resident set size (kbytes)" "$WORK/plain.time")
PLAIN_WALL=$(seconds "$(field "Elapsed (wall clock) time (h:mm:ss or m:ss)" "$WORK/plain.time")")

# mamori, as an operator would do it: init, collection, a manager who sets a password, import.
cd "$WORK" # no ./mamori.toml here: defaults apply
export MAMORI_DATA_DIR=$WORK/data
M=$BIN/mamori
"$M" --json init >"$WORK/init.json"
"$M" collection create --schema "$ROOT/crates/mamori-synth/customers.toml" >/dev/null
"$M" --json users create --login mgr --name M --role manager >"$WORK/user.json"
OTP=$(jq -r .one_time_password "$WORK/user.json")
NEW_PASSWORD="Import-Quokka-7Q2x-Lantern" # meets the default (guideline) password policy
MAMORI_PASSWORD=$OTP MAMORI_NEW_PASSWORD=$NEW_PASSWORD "$M" passwd --login mgr >/dev/null
MAMORI_PASSWORD=$NEW_PASSWORD "$TIME" -v -o "$WORK/mamori.time" \
    "$M" --json import --collection customers --login mgr "$CSV" >"$WORK/import.json"
[[ $(jq -r .rows "$WORK/import.json") == "$ROWS" ]] || { cat "$WORK/import.json" >&2; exit 1; }
MAMORI_RPS=$(jq -r '.rows_per_second | floor' "$WORK/import.json")
MAMORI_S=$(jq -r '.seconds * 100 | round / 100' "$WORK/import.json")
MAMORI_RSS=$(field "Maximum resident set size (kbytes)" "$WORK/mamori.time")
MAMORI_WALL=$(seconds "$(field "Elapsed (wall clock) time (h:mm:ss or m:ss)" "$WORK/mamori.time")")

awk -v rows="$ROWS" -v csv="$CSV_MIB" \
    -v ps="$PLAIN_S" -v prps="$PLAIN_RPS" -v prss="$PLAIN_RSS" -v pwall="$PLAIN_WALL" \
    -v ms="$MAMORI_S" -v mrps="$MAMORI_RPS" -v mrss="$MAMORI_RSS" -v mwall="$MAMORI_WALL" 'BEGIN {
    printf "### CLI import of %d rows (%d MiB CSV)\n\n", rows, csv
    print "| path | import s | rows/s | process wall s | peak RSS (MB) |"
    print "|---|---:|---:|---:|---:|"
    printf "| baseline: `plain_import` (plain SQLite, 1 transaction, prepared INSERT) | %.2f | %.0f | %.2f | %.1f |\n", ps, prps, pwall, prss * 1024 / 1e6
    printf "| `mamori import --collection customers` | %.2f | %.0f | %.2f | %.1f |\n", ms, mrps, mwall, mrss * 1024 / 1e6
    printf "\nratio mamori/baseline rows/s: **%.3f×** (goal ≥ 0.3×: %s)\n", mrps / prps, (mrps / prps >= 0.3 ? "met" : "not met")
    printf "peak RSS: **%.1f MB** (goal < 200 MB: %s); %.1f× the baseline process\n", mrss * 1024 / 1e6, (mrss * 1024 < 200e6 ? "met" : "not met"), mrss / prss
}'
