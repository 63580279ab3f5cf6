#!/usr/bin/env bash
# `make test`: the unit tests once, then the engine-facing tests once per engine, one engine at a
# time (start, run, stop) so that only one JVM is up at any moment. PostgreSQL runs throughout.
#   scripts/test-matrix.sh [PYTEST ARGS...]
#   ENGINES="opensearch elasticsearch elasticsearch9"   which engines, in this order (the default)
#   ENGINE_PORT=9200    every engine in turn on this port (some tests name 127.0.0.1:$ENGINE_PORT)
#   UNIT_TESTS=tests/unit   ENGINE_TESTS="tests/integration tests/faults tests/support"
# This checkout's node already answering on the port as the wanted engine (e.g. left by `make demo`) is
# used and left running; a node of another engine, or another checkout's, fails that engine's run with
# one line (nothing is skipped).
# Each engine's run gets INDEXER_TEST_ENGINE_KIND (tests/support/harness.py) and ENGINE.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/scripts"
PY="${PYTHON:-$REPO/.venv/bin/python}"
ENGINES="${ENGINES:-opensearch elasticsearch elasticsearch9}"
UNIT_TESTS="${UNIT_TESTS:-tests/unit}"
ENGINE_TESTS="${ENGINE_TESTS:-tests/integration tests/faults tests/support}"
export ENGINE_PORT="${ENGINE_PORT:-9200}"
unset ENGINE_DIR  # one folder per engine (under ENGINE_SERVICES), never one for all
cd "$REPO"

pg_started=""
engine_started=""
cleanup() {
  if [[ -n "$engine_started" ]]; then ENGINE="$engine_started" "$HERE/engine.sh" stop || true; fi
  if [[ -n "$pg_started" ]]; then "$HERE/pg.sh" stop || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! "$HERE/pg.sh" status >/dev/null 2>&1; then
  "$HERE/pg.sh" start || exit 1
  pg_started=1
fi

summary=()
failed=0
run() {  # run LABEL ENV... -- PYTEST ARGS: pytest with its own summary line kept for the table
  local label="$1" out start rc line
  shift
  out="$(mktemp)"
  start=$(date +%s)
  env "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  line="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran' "$out" | tail -n1 | sed 's/=//g; s/^ *//; s/ *$//')"
  rm -f "$out"
  summary+=("$(printf '%-16s %-4s %5ss  %s' "$label" "$([[ $rc == 0 ]] && echo ok || echo FAIL)" "$(( $(date +%s) - start ))" "${line:-no pytest summary}")")
  [[ $rc == 0 ]] || failed=1
}

echo "=== unit tests"
run unit "$PY" -m pytest -q "$@" $UNIT_TESTS

for engine in $ENGINES; do
  echo "=== $engine on http://127.0.0.1:$ENGINE_PORT"
  start=$(date +%s)
  dir="${ENGINE_SERVICES:-$REPO/.services}/$([[ $engine == opensearch ]] && echo engine || echo "$engine")"
  pid_before="$(cat "$dir/node.pid" 2>/dev/null || true)"
  if ENGINE="$engine" "$HERE/engine.sh" status >/dev/null 2>&1; then
    echo "engine: using the $engine node already running on port $ENGINE_PORT"
  elif ENGINE="$engine" "$HERE/engine.sh" start; then
    engine_started="$engine"
  else
    if [[ "$(cat "$dir/node.pid" 2>/dev/null || true)" != "$pid_before" ]]; then
      ENGINE="$engine" "$HERE/engine.sh" stop >/dev/null 2>&1 || true  # the node this failed start launched
    fi
    summary+=("$(printf '%-16s %-4s %5ss  %s' "$engine" FAIL "$(( $(date +%s) - start ))" "the node did not start")")
    failed=1
    continue
  fi
  echo "engine: ready in $(( $(date +%s) - start )) s"
  run "$engine" ENGINE="$engine" INDEXER_TEST_ENGINE_KIND="$engine" "$PY" -m pytest -q --durations=12 "$@" $ENGINE_TESTS
  if [[ -n "$engine_started" ]]; then
    ENGINE="$engine" "$HERE/engine.sh" stop
    engine_started=""
  fi
done

echo
echo "=== test matrix"
printf '%s\n' "${summary[@]}"
exit "$failed"
