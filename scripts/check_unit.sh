#!/usr/bin/env bash
# CI: the systemd unit must pass `systemd-analyze verify` with no complaint at all (verify exits 0 even on
# unknown keys, so any output is a failure) and score <= 2.5 in `systemd-analyze security --offline=yes`.
#   bash scripts/check_unit.sh [UNIT]        # default: every systemd/*.service; FACEONLY_MAX_EXPOSURE=2.5
#
# verify checks that ExecStart's program exists. On a machine where faceonly is not installed, the check
# runs in a private mount namespace where a tmpfs over the program's top directory (/opt) holds a symlink
# from the installed path to this checkout's venv entry point: the same unit file, byte for byte, and a
# real `faceonly` program behind the path. Nothing outside that namespace changes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -eq 0 ]]; then
  for each in systemd/*.service; do
    bash "$0" "$each"
  done
  exit 0
fi

unit=$(realpath "$1")
max_exposure=${FACEONLY_MAX_EXPOSURE:-2.5}

if ! command -v systemd-analyze >/dev/null; then
  echo "check_unit: systemd-analyze is missing (apt-get install systemd)" >&2
  exit 2
fi

exec_path=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$unit" | head -n 1)
if [[ -z "$exec_path" ]]; then
  echo "check_unit: no ExecStart= in $unit" >&2
  exit 1
fi

if [[ -z "${FACEONLY_CHECK_UNIT_INSIDE:-}" && ! -x "$exec_path" ]]; then
  entry=$PWD/.venv/bin/faceonly
  if [[ ! -x "$entry" ]]; then
    echo "check_unit: neither $exec_path nor $entry exists; run scripts/setup.sh first" >&2
    exit 1
  fi
  top=/$(echo "$exec_path" | cut -d/ -f2)
  ns_opts=(--mount --propagation private)
  # Unprivileged developers get a user namespace to mount in; CI runs as root and needs none.
  [[ $(id -u) -eq 0 ]] || ns_opts+=(--map-root-user)
  echo "== $exec_path is not installed here: checking in a mount namespace where it links to $entry"
  # shellcheck disable=SC2016 # the inner shell expands $1..$5
  exec unshare "${ns_opts[@]}" env FACEONLY_CHECK_UNIT_INSIDE=1 bash -c '
    set -euo pipefail
    mount -t tmpfs -o mode=0755 tmpfs "$1"
    mkdir -p "$(dirname "$2")"
    ln -s "$3" "$2"
    exec bash "$4" "$5"
  ' check-unit-ns "$top" "$exec_path" "$entry" "$0" "$unit"
fi

echo "== systemd-analyze verify $unit"
verify_out=$(systemd-analyze verify --man=no "$unit" 2>&1) && verify_rc=0 || verify_rc=$?
if [[ $verify_rc -ne 0 || -n "$verify_out" ]]; then
  echo "$verify_out"
  echo "check_unit: FAIL: systemd-analyze verify (exit $verify_rc) complained about $unit" >&2
  exit 1
fi
echo "verify: clean"

echo "== systemd-analyze security --offline=yes $unit"
# --threshold counts in tenths; it makes the command fail above the limit, the parse below reports it.
threshold=$(awk -v m="$max_exposure" 'BEGIN { printf "%d", m * 10 + 0.5 }')
security_out=$(systemd-analyze security --offline=yes --threshold="$threshold" --no-pager "$unit" 2>&1) \
  && security_rc=0 || security_rc=$?
echo "$security_out" | grep -E '^✗' || true
score=$(echo "$security_out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [[ -z "$score" ]]; then
  echo "$security_out"
  echo "check_unit: FAIL: no exposure score in the output of systemd-analyze security" >&2
  exit 1
fi
echo "exposure: $score (limit $max_exposure)"
if [[ $security_rc -ne 0 ]] || awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
  echo "check_unit: FAIL: exposure $score is above $max_exposure (exit $security_rc)" >&2
  exit 1
fi
echo "check_unit: OK"
