#!/usr/bin/env bash
# Authenticated point read over HTTP vs an axum hello world, same machine, same wrk settings,
# same run. mamori: `mamori demo` (release build; synthetic people, seed 2026) serving
# GET /api/v1/collections/customers/records/<id>?view=masked with a manager's bearer token;
# every such read authenticates the session and appends an audit event that is durable
# (group commit, synchronous=FULL) before the answer. Baseline: `hello` (crates/mamori-bench),
# GET / → "hello". Both listen on 127.0.0.1 only. Prints a markdown table.
#
# During the mamori run, /metrics is read before and after: audit events per commit (fsync)
# under that load, from mamori_audit_events_total and mamori_audit_commits_total.
#
# With UNAUDITED=1, the same read is also measured on a benchmark-only build whose audit
# writer acknowledges events without writing them (feature mamori-vault/unaudited-benchmark,
# built into its own target directory, $CARGO_TARGET_DIR/unaudited, so that it can never
# replace the normal binary): what auditing costs (goal: overhead ≤ 30 %).
#
# Usage: scripts/bench-http.sh
# Env:   DURATION (15s), THREADS (2), CONNECTIONS (64), WARMUP (3s), PEOPLE (10000),
#        DIAGNOSTICS (1: also measure mamori's GET /healthz and GET /readyz, to show where the
#        gap goes), UNAUDITED (0), UNAUDITED_BIN (an unaudited binary built beforehand, instead
#        of building one), CARGO_TARGET_DIR (default ./target)
set -euo pipefail

DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-3s}
PEOPLE=${PEOPLE:-10000}
DIAGNOSTICS=${DIAGNOSTICS:-1}
UNAUDITED=${UNAUDITED:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
for tool in wrk jq curl; do
    command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y $tool" >&2; exit 1; }
done

(cd "$ROOT" && cargo build --release --quiet -p mamori -p mamori-bench)
UNAUDITED_BIN=${UNAUDITED_BIN:-}
if [[ $UNAUDITED == 1 && -z $UNAUDITED_BIN ]]; then
    UNAUDITED_BIN=$CARGO_TARGET_DIR/unaudited/release/mamori
    (cd "$ROOT" && cargo build --release --quiet -p mamori --features mamori-vault/unaudited-benchmark \
        --target-dir "$CARGO_TARGET_DIR/unaudited")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mamori-bench-http.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# First line of a server's stdout, within $2 seconds.
first_line() {
    local file=$1 deadline=$((SECONDS + $2))
    until [[ -s $file ]] && head -1 "$file" | grep -q .; do
        ((SECONDS < deadline)) || { echo "server did not start; stderr:" >&2; cat "${file%.out}.err" >&2; exit 1; }
        sleep 0.2
    done
    head -1 "$file"
}

# Baseline server (port 0: the kernel picks a free loopback port; the URL is printed).
"$BIN/hello" 0 >"$WORK/hello.out" 2>"$WORK/hello.err" &
PIDS+=($!)
HELLO_URL=$(first_line "$WORK/hello.out" 30 | sed -n 's/^hello listening on //p')

# mamori demo: throwaway data dir, synthetic people, one user per role. Sets URL, TOKEN,
# READ_URL and DEMO_PID for the binary $1, started in directory $2.
start_demo() {
    local bin=$1 dir=$2
    mkdir -p "$dir"
    (cd "$dir" && exec "$bin" demo --listen 127.0.0.1:0 --json --people "$PEOPLE" >"$dir/demo.out" 2>"$dir/demo.err") &
    DEMO_PID=$!
    PIDS+=("$DEMO_PID")
    local demo password login email id
    demo=$(first_line "$dir/demo.out" 600)
    URL=$(jq -r .url <<<"$demo")
    password=$(jq -r '.users[] | select(.role == "manager") | .password' <<<"$demo")
    login=$(jq -r '.users[] | select(.role == "manager") | .login' <<<"$demo")
    TOKEN=$(curl -sf "$URL/api/v1/auth/login" -H 'content-type: application/json' \
        -d "$(jq -nc --arg l "$login" --arg p "$password" '{login: $l, password: $p}')" | jq -r .token)
    # The e-mail of the demo's person 0 (seed 2026), to find a record id through the API.
    [[ -s $WORK/person0.csv ]] || "$BIN/gen_csv" 1 2026 "$WORK/person0.csv"
    email=$(sed -n 2p "$WORK/person0.csv" | tr ',' '\n' | grep '@')
    id=$(curl -sf "$URL/api/v1/collections/customers/search" -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' -d "$(jq -nc --arg v "$email" '{field: "email", value: $v}')" |
        jq -r '.records[0].id')
    READ_URL="$URL/api/v1/collections/customers/records/$id?view=masked"
    curl -sf -o /dev/null -H "authorization: Bearer $TOKEN" "$READ_URL" || { echo "record read failed" >&2; exit 1; }
}
start_demo "$BIN/mamori" "$WORK/audited"
MAMORI_PID=$DEMO_PID

# wrk: requests/s and latency percentiles; any non-2xx answer fails the run.
run_wrk() {
    local out=$1
    shift
    [[ $WARMUP == 0s ]] || wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" >"$out"
    if grep -q "Non-2xx" "$out"; then
        cat "$out" >&2
        echo "non-2xx answers: the measurement is invalid" >&2
        exit 1
    fi
}
# A counter of mamori's /metrics.
counter() { curl -sf "$URL/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
run_wrk "$WORK/hello.wrk" "$HELLO_URL/"
THREADS_BEFORE=$(ls "/proc/$MAMORI_PID/task" | wc -l)
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "Authorization: Bearer $TOKEN" "$READ_URL" >/dev/null
COMMITS_BEFORE=$(counter mamori_audit_commits_total)
EVENTS_BEFORE=$(counter mamori_audit_events_total)
WARMUP=0s run_wrk "$WORK/mamori.wrk" -H "Authorization: Bearer $TOKEN" "$READ_URL"
COMMITS=$(($(counter mamori_audit_commits_total) - COMMITS_BEFORE))
EVENTS=$(($(counter mamori_audit_events_total) - EVENTS_BEFORE))
THREADS_AFTER=$(ls "/proc/$MAMORI_PID/task" | wc -l)
if [[ $DIAGNOSTICS == 1 ]]; then
    # Where the gap goes: mamori's router and middleware alone, then one storage round trip.
    run_wrk "$WORK/healthz.wrk" "$URL/healthz"
    run_wrk "$WORK/readyz.wrk" "$URL/readyz"
fi

if [[ $UNAUDITED == 1 ]]; then
    AUDITED_URL=$URL
    start_demo "$UNAUDITED_BIN" "$WORK/unaudited"
    grep -q "UNAUDITED BENCHMARK BUILD" "$WORK/unaudited/demo.err" || { echo "the unaudited build did not say so" >&2; exit 1; }
    run_wrk "$WORK/unaudited.wrk" -H "Authorization: Bearer $TOKEN" "$READ_URL"
    URL=$AUDITED_URL
fi

rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
HELLO_RPS=$(rps "$WORK/hello.wrk")
MAMORI_RPS=$(rps "$WORK/mamori.wrk")
RATIO=$(awk -v m="$MAMORI_RPS" -v h="$HELLO_RPS" 'BEGIN { printf "%.3f", m / h }')
MET=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.3 ? "met" : "not met") }')

# One markdown table row: label, then requests/s, p50 and p99 of a wrk output file.
row() { echo "| $1 | $(rps "$2") | $(pct "$2" 50) | $(pct "$2" 99) |"; }
table_head() { echo "| $1 | requests/s | p50 | p99 |"; echo "|---|---:|---:|---:|"; }

echo "### HTTP point read vs axum hello world (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, after a $WARMUP warm-up)"
echo
table_head server
row 'baseline: axum hello world `GET /`' "$WORK/hello.wrk"
row 'mamori `GET /api/v1/collections/customers/records/{id}?view=masked` (bearer, audited)' "$WORK/mamori.wrk"
if [[ $DIAGNOSTICS == 1 ]]; then
    for probe in healthz readyz; do
        case $probe in
            healthz) what='diagnostic: mamori `GET /healthz` (router + middleware, no auth, no storage)' ;;
            readyz) what='diagnostic: mamori `GET /readyz` (one SQLite round trip on the blocking pool)' ;;
        esac
        row "$what" "$WORK/$probe.wrk"
    done
fi
echo
echo "ratio mamori/baseline requests/s: **${RATIO}×** (goal ≥ 0.3×: $MET)"
echo "mamori threads: $THREADS_BEFORE before the record-read run, $THREADS_AFTER after it"
echo "audit during the record-read run: $EVENTS events in $COMMITS commits: \
$(awk -v e="$EVENTS" -v c="$COMMITS" 'BEGIN { printf "%.1f", (c > 0 ? e / c : 0) }') events per commit (fsync)"
if [[ $UNAUDITED == 1 ]]; then
    UNAUDITED_RPS=$(rps "$WORK/unaudited.wrk")
    KEPT=$(awk -v a="$MAMORI_RPS" -v u="$UNAUDITED_RPS" 'BEGIN { printf "%.3f", a / u }')
    OVERHEAD=$(awk -v k="$KEPT" 'BEGIN { printf "%.1f", (1 - k) * 100 }')
    echo
    echo "### Auditing overhead: the same read, audited build vs unaudited benchmark build"
    echo
    table_head build
    row 'unaudited benchmark build (events acknowledged, not written)' "$WORK/unaudited.wrk"
    row 'normal build (every read durably audited)' "$WORK/mamori.wrk"
    echo
    echo "audited/unaudited requests/s: **${KEPT}×**, overhead ${OVERHEAD} % \
(goal ≤ 30 %: $(awk -v o="$OVERHEAD" 'BEGIN { print (o <= 30 ? "met" : "not met") }'))"
fi
