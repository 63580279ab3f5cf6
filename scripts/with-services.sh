#!/usr/bin/env bash
# Run a command with the local OpenSearch node and PostgreSQL server up; stop afterwards
# whichever of them this script started (a node left running by `make demo` stays up).
#   scripts/with-services.sh .venv/bin/pytest tests
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

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
