#!/usr/bin/env bash
# Run a command with the local search node (ENGINE, default opensearch; see scripts/engine.sh) and the
# PostgreSQL server up; stop afterwards whichever of them this script started (a node left running by
# `make demo` stays up). `make test` runs every engine through scripts/test-matrix.sh instead.
#   scripts/with-services.sh .venv/bin/python bench/run.py --quick
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export ENGINE="${ENGINE:-opensearch}"  # so that the cleanup stops this engine's node only

started=()
cleanup() {
  for svc in "${started[@]}"; do "$HERE/$svc.sh" stop || true; done
}
trap cleanup EXIT

for svc in engine pg; do
  if ! "$HERE/$svc.sh" status >/dev/null 2>&1; then
    "$HERE/$svc.sh" start || exit 1
    started+=("$svc")
  fi
done

"$@"
