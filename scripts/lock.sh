#!/usr/bin/env bash
# The dependency lock: uv.lock resolves pyproject.toml's ranges for every platform the README supports (x86_64
# Linux for CI, aarch64 for 64-bit Raspberry Pi OS bookworm); requirements/*.txt are its exports with hashes,
# which scripts/setup.sh, .ci/run and scripts/install.sh install from (pip --require-hashes, no resolution).
#   bash scripts/lock.sh            # after editing pyproject.toml: re-resolve, keeping locked versions that fit
#   bash scripts/lock.sh --upgrade  # the newest releases the ranges allow; then run the tests (the embedder's
#                                   # shipped thresholds say which library versions they came from)
#   bash scripts/lock.sh --check    # CI: fail when uv.lock or requirements/*.txt no longer match pyproject.toml
set -euo pipefail
cd "$(dirname "$0")/.."

uv=${UV:-.venv/bin/uv}
if [[ ! -x $uv ]]; then
  uv=$(command -v uv) || { echo "lock.sh: uv not found (bash scripts/setup.sh --test installs it)" >&2; exit 2; }
fi

# name: the extras and groups it installs (one requirements/<name>.txt each)
sets=(
  "terminal:--extra gate --extra access --group setup"
  "run:--extra demo --extra backend --extra fleet --group setup"
  "bench:--extra demo --extra backend --extra bench --extra plots --group setup --group peer"
  "test:--extra demo --extra backend --extra bench --extra plots --extra gate --extra access --extra fleet --extra test --group setup --group peer"
)

export_to() {
  local dir=$1 entry name args
  for entry in "${sets[@]}"; do
    name=${entry%%:*}
    args=${entry#*:}
    {
      echo "# Generated from uv.lock by scripts/lock.sh ($name set): do not edit; run bash scripts/lock.sh."
      # shellcheck disable=SC2086 # args is a list of flags
      "$uv" export --frozen --quiet --no-header --no-emit-project --no-default-groups --format requirements.txt $args
    } >"$dir/$name.txt"
  done
}

case "${1:-}" in
  --check)
    "$uv" lock --check --quiet || { echo "lock.sh: uv.lock does not match pyproject.toml: run bash scripts/lock.sh" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    export_to "$tmp"
    if ! diff -r -q "$tmp" requirements >/dev/null; then
      diff -r "$tmp" requirements | head -20 >&2
      echo "lock.sh: requirements/ is not the export of uv.lock: run bash scripts/lock.sh" >&2
      exit 1
    fi
    echo "lock: uv.lock and requirements/ match pyproject.toml"
    ;;
  --upgrade) "$uv" lock --upgrade && export_to requirements ;;
  "") "$uv" lock && export_to requirements ;;
  *) echo "usage: bash scripts/lock.sh [--check | --upgrade]" >&2; exit 2 ;;
esac
