#!/usr/bin/env bash
# `make test`: lint and types first (ruff, mypy: fast), the unit tests, the services' isolation test once,
# then the engine-facing tests on every engine AT ONCE: each engine's node on its own port, each suite in
# its own pytest process. The suites share nothing but PostgreSQL (each test makes its own tables) and
# the two cores; they spend most of their time waiting on the nodes, so running them side by side takes
# about as long as the slowest one (measured: docs/development.md).
#   scripts/test-matrix.sh [PYTEST ARGS...]
#   ENGINES="opensearch elasticsearch elasticsearch9"   which engines (the default: all three)
#   ENGINE_PORT=9200    the first engine's HTTP port; the next ones take the ports after it
#   MATRIX_JOBS=3       engine suites run at once (1: one after the other)
#   UNIT_TESTS=tests/unit   ENGINE_TESTS="tests/integration tests/faults tests/support"   SERVICE_TESTS=tests/services
#   CLUSTER_ENGINES="opensearch elasticsearch"   the multi-node tests (tests/cluster), on a 3-node cluster of each,
#                       one after the other once the engine suites are done; node 1 of the first on
#                       CLUSTER_PORT (ENGINE_PORT+30), the next 10 ports further; "" for none
#   SOAK_MINUTES=3      the chaos soak (tests/soak) on SOAK_ENGINE (opensearch), after them; 0 for none
#   PROM_PORT=9490 PROM_DIR=.services/prometheus   the local Prometheus (scripts/prometheus.sh), started with
#                       PostgreSQL before the unit tests when not running (and stopped at the end), exported
# This checkout's node already answering on its port as the wanted engine (e.g. left by `make demo`) is
# used and left running; a node of another engine, or another checkout's, fails that engine's run with
# one line (nothing is skipped).
# Each engine's run gets INDEXER_TEST_ENGINE_KIND (tests/support/harness.py), ENGINE and its ENGINE_PORT.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/scripts"
PY="${PYTHON:-$REPO/.venv/bin/python}"
BIN="$(dirname "$PY")"
read -r -a ENGINE_LIST <<<"${ENGINES:-opensearch elasticsearch elasticsearch9}"
UNIT_TESTS="${UNIT_TESTS:-tests/unit}"
ENGINE_TESTS="${ENGINE_TESTS:-tests/integration tests/faults tests/support}"
SERVICE_TESTS="${SERVICE_TESTS:-tests/services}"
BASE_PORT="${ENGINE_PORT:-9200}"
JOBS="${MATRIX_JOBS:-${#ENGINE_LIST[@]}}"
unset ENGINE_DIR  # one folder per engine (under ENGINE_SERVICES), never one for all
LOGS="$(mktemp -d)"
cd "$REPO"

pg_started=""
prom_started=""
# The local Prometheus (scripts/prometheus.sh) the tests scrape through: its port and folder, for them too.
export PROM_PORT="${PROM_PORT:-9490}" PROM_DIR="${PROM_DIR:-$REPO/.services/prometheus}"
# The nodes this script started: a file "$LOGS/<engine>.started" holding its port. (A start that gives up
# stops what it launched itself: engine.sh.)
cleanup() {
  local marker engine
  # suites still running (an interrupted run): end them before their nodes and logs go
  kill $(jobs -p) 2>/dev/null
  wait 2>/dev/null
  for marker in "$LOGS"/*.started; do
    [[ -f "$marker" ]] || continue
    engine="$(basename "$marker" .started)"
    ENGINE="$engine" ENGINE_PORT="$(cat "$marker")" "$HERE/engine.sh" stop || true
  done
  for marker in "$LOGS"/*.cluster; do  # a cluster whose tests were interrupted
    [[ -f "$marker" ]] || continue
    env $(cat "$marker") "$HERE/cluster.sh" stop || true
  done
  if [[ -n "$pg_started" ]]; then "$HERE/pg.sh" stop || true; fi
  if [[ -n "$prom_started" ]]; then "$HERE/prometheus.sh" stop || true; fi
  rm -rf "$LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary=()
failed=0
result_line() {  # result_line LABEL RC SECONDS LOG: one row of the table, pytest's own summary line in it
  local line
  line="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran|^Found [0-9]+ error|^Success|^All checks passed|^- \*\*mismatches' "$4" | tail -n1 | sed 's/=//g; s/^[- ]*//; s/\*//g; s/ *$//')"
  summary+=("$(printf '%-16s %-4s %5ss  %s' "$1" "$([[ $2 == 0 ]] && echo ok || echo FAIL)" "$3" "${line:-no summary}")")
  [[ $2 == 0 ]] || failed=1
}
run() {  # run LABEL COMMAND...: in the foreground, its output shown and kept for the table
  local label="$1" log="$LOGS/$1.log" start rc
  shift
  start=$(date +%s)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  result_line "$label" "$rc" "$(( $(date +%s) - start ))" "$log"
}

echo "=== lint and types (ruff, mypy)"
run ruff "$BIN/ruff" check indexer
run mypy "$BIN/mypy"

if ! "$HERE/pg.sh" status >/dev/null 2>&1; then
  "$HERE/pg.sh" start || exit 1
  pg_started=1
fi
if ! "$HERE/prometheus.sh" status >/dev/null 2>&1; then
  "$HERE/prometheus.sh" start || exit 1
  prom_started=1
fi

echo "=== unit tests"
run unit "$PY" -m pytest -q "$@" $UNIT_TESTS

echo "=== the services stay private to their checkout (nodes on free ports, once)"
run services "$PY" -m pytest -q "$@" $SERVICE_TESTS

# The engines: each node on its own port, started together, then the suites side by side.
declare -A port_of
i=0
for engine in "${ENGINE_LIST[@]}"; do
  port_of[$engine]=$(( BASE_PORT + i ))
  i=$(( i + 1 ))
done
start_engine() {  # start_engine ENGINE: this checkout's node on its port (reused when it answers already)
  local engine="$1" port="${port_of[$1]}"
  if ENGINE="$engine" ENGINE_PORT="$port" "$HERE/engine.sh" status >/dev/null 2>&1; then
    echo "engine: using the $engine node already running on port $port"
    return 0
  fi
  ENGINE="$engine" ENGINE_PORT="$port" "$HERE/engine.sh" start || return 1
  echo "$port" >"$LOGS/$engine.started"
}
ports=()
for engine in "${ENGINE_LIST[@]}"; do ports+=("${port_of[$engine]}"); done
echo "=== engines: ${ENGINE_LIST[*]} on ports ${ports[*]}"
for engine in "${ENGINE_LIST[@]}"; do
  start_engine "$engine" >"$LOGS/$engine.start.log" 2>&1 &
done
wait
ready=()
for engine in "${ENGINE_LIST[@]}"; do
  cat "$LOGS/$engine.start.log"
  if ENGINE="$engine" ENGINE_PORT="${port_of[$engine]}" "$HERE/engine.sh" status >/dev/null 2>&1; then
    ready+=("$engine")
  else
    summary+=("$(printf '%-16s %-4s %5ss  %s' "$engine" FAIL 0 "the node did not start")")
    failed=1
  fi
done

suite() {  # suite ENGINE: the engine-facing tests against its node, into its log; its exit code in a file
  local engine="$1" start rc
  start=$(date +%s)
  ENGINE="$engine" ENGINE_PORT="${port_of[$engine]}" INDEXER_TEST_ENGINE_KIND="$engine" \
    "$PY" -m pytest -q -p no:cacheprovider --durations=12 "${@:2}" $ENGINE_TESTS >"$LOGS/$engine.log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - start ))" >"$LOGS/$engine.rc"
}
running=0
for engine in "${ready[@]}"; do
  if (( running >= JOBS )); then wait -n; running=$(( running - 1 )); fi
  echo "=== $engine on http://127.0.0.1:${port_of[$engine]}"
  suite "$engine" "$@" &
  running=$(( running + 1 ))
done
wait
for engine in "${ready[@]}"; do
  echo; echo "=== $engine (http://127.0.0.1:${port_of[$engine]}): its output"
  cat "$LOGS/$engine.log"
  read -r rc seconds <"$LOGS/$engine.rc"
  result_line "$engine" "$rc" "$seconds" "$LOGS/$engine.log"
done

# The single nodes this script started are done: stopped now, so that the clusters have the cores.
for marker in "$LOGS"/*.started; do
  [[ -f "$marker" ]] || continue
  engine="$(basename "$marker" .started)"
  ENGINE="$engine" ENGINE_PORT="$(cat "$marker")" "$HERE/engine.sh" stop || true
  rm -f "$marker"
done

# The multi-node tests: each engine's 3-node cluster (scripts/cluster.sh) in a folder of its own, started,
# tested, stopped; one engine at a time (three JVMs each on two cores).
read -r -a CLUSTER_LIST <<<"${CLUSTER_ENGINES-opensearch elasticsearch}"
cluster_port="${CLUSTER_PORT:-$(( BASE_PORT + 30 ))}"
for engine in "${CLUSTER_LIST[@]}"; do
  label="$engine-3nodes"
  export_cluster=(ENGINE="$engine" NODES=3 ENGINE_PORT="$cluster_port"
                  CLUSTER_DIR="${ENGINE_SERVICES:-$REPO/.services}/test-cluster-$engine")
  echo; echo "=== $engine, 3 nodes, on ports $cluster_port-$(( cluster_port + 2 ))"
  echo "${export_cluster[*]}" >"$LOGS/$label.cluster"
  if env "${export_cluster[@]}" "$HERE/cluster.sh" start; then
    run "$label" env "${export_cluster[@]}" INDEXER_TEST_ENGINE_KIND="$engine" \
      INDEXER_TEST_ENGINE="http://127.0.0.1:$cluster_port" INDEXER_TEST_CLUSTER_PORT="$cluster_port" \
      "$PY" -m pytest -q -p no:cacheprovider --durations=6 "$@" tests/cluster
  else
    summary+=("$(printf '%-16s %-4s %5ss  %s' "$label" FAIL 0 "the cluster did not start")")
    failed=1
  fi
  env "${export_cluster[@]}" "$HERE/cluster.sh" stop || true
  rm -f "$LOGS/$label.cluster"
  cluster_port=$(( cluster_port + 10 ))
done

# The chaos soak, short: its own PostgreSQL and 3-node cluster, faults at random, an exact comparison at the end
# (tests/soak/soak.py; `make soak` runs the long one). Its report goes to the log, not to SOAK.md.
SOAK_MINUTES="${SOAK_MINUTES:-3}"
if [[ "$SOAK_MINUTES" != 0 ]]; then
  echo; echo "=== the chaos soak, $SOAK_MINUTES minutes, ${SOAK_ENGINE:-opensearch}"
  run "soak-${SOAK_MINUTES}min" "$PY" -m tests.soak.soak --minutes "$SOAK_MINUTES" --engine "${SOAK_ENGINE:-opensearch}" \
    --port "$(( BASE_PORT + 50 ))" --pg-port "$(( ${PG_PORT:-54329} + 10 ))" --out "$LOGS/soak.md" --gate all
fi

echo
echo "=== test matrix"
printf '%s\n' "${summary[@]}"
exit "$failed"
