#!/usr/bin/env bash
# Sets up faceonly on a fresh Debian / Raspberry Pi OS machine for the demo or for the tests:
# system packages, a venv in .venv (with system site packages, so apt's picamera2 is seen on a Pi),
# the project, and the bundled demo replay. Idempotent.
#   bash scripts/setup.sh          # runtime + embedded demo broker + the reference backend
#   bash scripts/setup.sh --test   # also the test tools, the brokers the tests start, and the bench's
#                                  # peer and plots (CI runs this)
#   bash scripts/setup.sh --bench  # runtime + the bench's peer (face_recognition) and plots
# Python packages come from the lock (requirements/*.txt, exported from uv.lock with hashes).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
with_bench=0
[[ "${1:-}" == "--test" ]] && with_tests=1 && with_bench=1
[[ "${1:-}" == "--bench" ]] && with_bench=1

sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

apt_packages=(python3-venv python3-pip)
# The backend's tests start a real PostgreSQL and open its page in headless Chromium; the door screen's
# tests drive Chromium through chromium-driver and render its voice with espeak-ng (measured with sox).
((with_tests)) && apt_packages+=(mosquitto systemd shellcheck postgresql chromium chromium-driver espeak-ng sox)
if ! dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
  echo "== installing system packages: ${apt_packages[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi
# mosquitto's packaged service is not needed: the tests start their own brokers on free ports.
if ((with_tests)) && command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  "${sudo_cmd[@]}" systemctl disable --now mosquitto || true
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv"
  "$python" -m venv --system-site-packages .venv
fi
# Exactly what CI tested: the hashed exports of uv.lock (bash scripts/lock.sh refreshes them), no resolution.
requirements=requirements/run.txt
((with_bench)) && requirements=requirements/bench.txt
((with_tests)) && requirements=requirements/test.txt
echo "== installing the locked dependencies ($requirements)"
.venv/bin/python -m pip install -q --require-hashes --no-deps -r "$requirements"
echo "== installing faceonly (editable)"
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .

echo "== checking models"
.venv/bin/faceonly models verify
echo "== making the demo replay"
.venv/bin/faceonly replay make-demo
echo "== ready"
