#!/bin/sh
# bench/llm.sh [NYX]: the figures of the Claude client (issue 3), against a
# fake Claude in a process of its own so that nyx's CPU time is nyx's only.
# Uses the database nyx would use (NYX_DATABASE_URL, PG*, or the embedded
# one); BENCH_DB=scratch: a database made for the run and dropped after
# (bench/scratch.lua).
set -e
nyx=${1:-build/nyx}
out=$(mktemp)
scratch= had_url=${NYX_DATABASE_URL+set} url0=${NYX_DATABASE_URL-}
drop_scratch() { # from where nyx was pointed before: a database cannot drop itself
  [ -n "$scratch" ] || return 0
  if [ -n "$had_url" ]; then NYX_DATABASE_URL=$url0; else unset NYX_DATABASE_URL; fi
  "$nyx" bench/scratch.lua drop "$scratch"
}
if [ "${BENCH_DB:-}" = scratch ]; then
  NYX_DATABASE_URL=$("$nyx" bench/scratch.lua create)
  export NYX_DATABASE_URL
  scratch=${NYX_DATABASE_URL##*dbname=}
fi
"$nyx" fake-claude --port 0 > "$out" &
fake=$!
trap 'kill $fake 2>/dev/null; rm -f "$out"; drop_scratch' EXIT
while ! grep -q listening "$out"; do sleep 0.05; done
export ANTHROPIC_BASE_URL=$(sed -n 's/listening on //p' "$out") ANTHROPIC_API_KEY=bench NYX_OFFLINE=0
"$nyx" bench/llm.lua 5000 50 0      # throughput and CPU at zero delay
"$nyx" bench/llm.lua 20000 50 0     # the same, longer
"$nyx" bench/llm.lua 1000 1000 200  # 1,000 in flight against a 200 ms server
