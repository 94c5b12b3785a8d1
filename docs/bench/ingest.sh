#!/bin/bash
# docs/bench/ingest.sh W — one room, W wrk connections posting 1-op update_node requests for 10 s: the
# shape of ../shared/tools/ingest-vs-pgbench (its room, its post.lua), on either database, with the
# server's CPU per request read from /proc. Run from the project root.
# env: DB=sqlite|pg (default sqlite), WT=wrk threads (default 2, at most W), BIN=a built binary (default: go build ./cmd/api),
#      PROF=1 (an 8 s CPU profile to /tmp/cpu.pprof through LIVESHARE_PPROF_ADDR=127.0.0.1:6061)
# prints: ops/s, ack p50 ms, ack p99 ms, non-2xx answers, server CPU µs per request
set -euo pipefail
W=${1:-32}; DB=${DB:-sqlite}; WT=${WT:-2}; [ "$WT" -gt "$W" ] && WT=$W
PG=postgres://postgres@127.0.0.1:5432
T=$(mktemp -d); PID=; DBN=ing_$$
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; [ "$DB" = pg ] && psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DBN" >/dev/null 2>&1; rm -rf "$T"; }
trap cleanup EXIT
BIN=${BIN:-}
if [ -z "$BIN" ]; then go build -o "$T/api" ./cmd/api; BIN=$T/api; fi
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
ENVS=(LIVESHARE_ADDR=127.0.0.1:$PORT LIVESHARE_LOG_LEVEL=warn LIVESHARE_DATA_DIR=$T)
if [ "$DB" = pg ]; then psql "$PG/postgres" -qc "CREATE DATABASE $DBN" >/dev/null; ENVS+=(DATABASE_URL="$PG/$DBN?sslmode=disable"); fi
[ -n "${PROF:-}" ] && ENVS+=(LIVESHARE_PPROF_ADDR=127.0.0.1:6061)
env "${ENVS[@]}" "$BIN" >"$T/log" 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
B=http://127.0.0.1:$PORT
ROOM=$(curl -s -XPOST "$B/rooms" -H 'Content-Type: application/json' -d '{"name":"bars"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
curl -s -XPOST "$B/rooms/$ROOM/ops" -H 'Content-Type: application/json' -d '{"ops":[{"op":"add_node","node":{"id":"n1","kind":"t","label":"n1","x":0,"y":0}}]}' >/dev/null
cat >"$T/post.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"]="application/json"},
    '{"ops":[{"op":"update_node","id":"n1","patch":{"x":' .. counter .. '}}]}')
end
LUA
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
C0=$(cpu)
PP=
if [ -n "${PROF:-}" ]; then (sleep 1; curl -s -o /tmp/cpu.pprof "http://127.0.0.1:6061/debug/pprof/profile?seconds=8") & PP=$!; fi
wrk -t$WT -c"$W" -d10s --latency -s "$T/post.lua" "$B/rooms/$ROOM/ops" >"$T/wrk" 2>&1
C1=$(cpu); [ -n "$PP" ] && wait $PP
ms() { awk -v k="$1" '$1==k{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$T/wrk"; }
RPS=$(awk '/Requests\/sec/{print $2}' "$T/wrk"); REQ=$(awk '/requests in/{print $1}' "$T/wrk")
NON=$(awk -F: '/Non-2xx/{gsub(/ /,"",$2); print $2}' "$T/wrk"); NON=${NON:-0}
TCK=$(getconf CLK_TCK)
echo "$RPS $(ms 50%) $(ms 99%) $NON $(python3 -c "print(round(($C1-$C0)/$TCK*1e6/$REQ,1))")"
