#!/usr/bin/env bash
# HTTP benchmark (docs/PERFORMANCE.md, "HTTP API"): wrk against `surge serve` (single
# payments and /healthz), then against the same routes answered without an engine by plain
# hyper and by axum (the ceiling of the HTTP edge on this machine), all on loopback, back
# to back. Prints one line per run: target, route, requests/s, p50, p99.
#
# Needs: release builds (`cargo build --release -p surge && cargo build --release -p
# surge-server --example http_ceiling`), wrk (`apt-get install wrk`) and curl.
# Usage: bash benches/http/run.sh [seconds per run, default 8] [runs, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-8}"
RUNS="${2:-3}"
CONNECTIONS="${CONNECTIONS:-256}"
THREADS="${THREADS:-2}"
SURGE=target/release/surge
CEILING=target/release/examples/http_ceiling
for tool in wrk curl "$SURGE" "$CEILING"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || { echo "missing: $tool" >&2; exit 2; }
done
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
HTTP_ADDR="127.0.0.1:${HTTP_PORT:-7790}"

wait_up() {
    for _ in $(seq 1 100); do
        curl -fs "http://$HTTP_ADDR/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not come up on $HTTP_ADDR" >&2
    exit 1
}

# wrk_run TARGET ROUTE [script]: one line "TARGET ROUTE req/s p50 p99".
wrk_run() {
    local target="$1" route="$2" script="${3:-}"
    local out
    if [ -n "$script" ]; then
        out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "http://$HTTP_ADDR" 2>&1)"
    else
        out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "http://$HTTP_ADDR$route" 2>&1)"
    fi
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)"
    printf '%-14s %-14s %12s req/s  p50 %-9s p99 %-9s %s\n' "$target" "$route" "$rps" "$p50" "$p99" "$errors"
}

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wrk -t$THREADS -c$CONNECTIONS -d${SECONDS_PER_RUN}s, $RUNS runs each"

# Surge: one shard, no history index (as in the engine benchmarks).
"$SURGE" serve --data-dir "$WORK/data" --shards 1 --history false \
    --http-addr "$HTTP_ADDR" --tcp-addr 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
wait_up
TOKEN="$(awk '$1 == "payments" {print $3}' "$WORK/data/initial-tokens.txt")"
curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]' "http://$HTTP_ADDR/v1/accounts"
export TOKEN
for run in $(seq 1 "$RUNS"); do
    ID_BASE=$((run * 1000000000)) wrk_run surge /v1/transfers benches/http/transfers.lua
done
wrk_run surge /healthz
kill -INT "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""

for stack in hyper axum; do
    "$CEILING" --stack "$stack" --addr "$HTTP_ADDR" >"$WORK/$stack.log" 2>&1 &
    SERVER_PID=$!
    wait_up
    for run in $(seq 1 "$RUNS"); do
        ID_BASE=$((run * 1000000000)) wrk_run "$stack-ceiling" /v1/transfers benches/http/transfers.lua
    done
    wrk_run "$stack-ceiling" /healthz
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
