#!/usr/bin/env bash
# Installs faceonly as a hardened systemd service on Raspberry Pi OS (64-bit) or any Debian with a USB
# camera, from this checkout. Idempotent: run it again to upgrade; your config is never overwritten.
#
#   sudo bash scripts/install.sh                        # install or upgrade, enable the unit
#   sudo bash scripts/install.sh --mqtt-clients         # also mosquitto-clients (mosquitto_sub for checks)
#   sudo bash scripts/install.sh --kiosk                # also the door screen: Chromium in kiosk mode on the
#                                                       # display, started by the desktop session
#   sudo bash scripts/install.sh --voice                # also the door screen's voice (espeak-ng, ALSA)
#   sudo bash scripts/install.sh --uninstall            # remove program, unit; keep state, config, user
#   sudo bash scripts/install.sh --uninstall --purge    # also /var/lib/faceonly, /etc/faceonly, the user
#   bash scripts/install.sh --dry-run [...]             # print what would change, change nothing
#
# Layout (it must match systemd/faceonly.service):
#   /opt/faceonly/venv      python venv (--system-site-packages, so apt's picamera2 is importable)
#   /opt/faceonly/models    verified models (read-only at run time)
#   /etc/faceonly/          config.toml (root:faceonly 0640), config.example.toml
#   /var/lib/faceonly/      keys, outbox, gallery (created by systemd: StateDirectory=, 0700, faceonly)
#   --kiosk: /usr/local/bin/faceonly-kiosk, /etc/xdg/autostart/faceonly-kiosk.desktop
#   --voice: /etc/systemd/system/faceonly.service.d/voice.conf (sound devices for the service)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/faceonly
VENV=$PREFIX/venv
CONF_DIR=/etc/faceonly
CONF=$CONF_DIR/config.toml
STATE_DIR=/var/lib/faceonly
UNIT=faceonly.service
UNIT_PATH=/etc/systemd/system/$UNIT
SVC_USER=faceonly
CAMERA_GROUPS=(video render)
KIOSK_BIN=/usr/local/bin/faceonly-kiosk
KIOSK_DESKTOP=/etc/xdg/autostart/faceonly-kiosk.desktop
DROPIN_DIR=/etc/systemd/system/$UNIT.d
VOICE_DROPIN=$DROPIN_DIR/voice.conf

action=install
purge=0
dry_run=0
mqtt_clients=0
kiosk=0
voice=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --uninstall) action=uninstall ;;
    --purge) purge=1 ;;
    --dry-run) dry_run=1 ;;
    --mqtt-clients) mqtt_clients=1 ;;
    --kiosk) kiosk=1 ;;
    --voice) voice=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done
if ((purge)) && [[ $action != uninstall ]]; then
  echo "install.sh: --purge goes with --uninstall" >&2
  exit 2
fi

say() { echo "== $*"; }

# Every change to the system goes through `run`, so --dry-run shows exactly what would happen.
run() {
  if ((dry_run)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

systemd_running() { [[ -d /run/systemd/system ]]; }

require_root() {
  if ((!dry_run)) && [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (sudo bash $0 $*)" >&2
    exit 1
  fi
}

check_debian() {
  local id="" id_like=""
  # shellcheck disable=SC1091
  [[ -r /etc/os-release ]] && { id=$(. /etc/os-release && echo "${ID:-}"); id_like=$(. /etc/os-release && echo "${ID_LIKE:-}"); }
  if [[ " $id $id_like " != *" debian "* ]]; then
    echo "install.sh: this installer is for Debian and Raspberry Pi OS (found ID=$id ID_LIKE=$id_like)" >&2
    exit 1
  fi
}

# ---- install ----------------------------------------------------------------------------------

apt_packages() {
  # python3-systemd: log records go to the journal with structured fields (device/infra/logsetup.py).
  local wanted=(python3 python3-venv python3-systemd)
  # Raspberry Pi OS ships picamera2 (with its libcamera bindings) only as an apt package.
  if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    wanted+=(python3-picamera2)
  fi
  if ((mqtt_clients)); then
    wanted+=(mosquitto-clients)
  fi
  # Door modes' badge reader: python-evdev has no aarch64 wheel; the venv sees the distribution's.
  if [[ $(uname -m) == aarch64 ]] && apt-cache show python3-evdev >/dev/null 2>&1; then
    wanted+=(python3-evdev)
  fi
  if ((kiosk)); then
    # Raspberry Pi OS packages Chromium as chromium-browser, Debian as chromium.
    if apt-cache policy chromium-browser 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      wanted+=(chromium-browser)
    else
      wanted+=(chromium)
    fi
  fi
  if ((voice)); then
    wanted+=(espeak-ng alsa-utils)
  fi
  local missing=()
  local pkg
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    say "installing apt packages: ${missing[*]} (wanted: ${wanted[*]})"
    run env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    say "apt packages present: ${wanted[*]}"
  fi
}

service_user() {
  local group
  for group in "${CAMERA_GROUPS[@]}"; do
    getent group "$group" >/dev/null || run groupadd --system "$group"
  done
  if ! getent passwd "$SVC_USER" >/dev/null; then
    say "creating system user $SVC_USER"
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "faceonly terminal service" "$SVC_USER"
  fi
  local joined
  joined=$(IFS=,; echo "${CAMERA_GROUPS[*]}")
  run usermod --append --groups "$joined" "$SVC_USER"
}

# The locked terminal set (requirements/terminal.txt, hashes checked). apt's picamera2 depends on compiled
# modules (simplejpeg, ...) built against the system numpy: a numpy from PyPI in the venv would shadow it and
# break `import picamera2`, so where apt's python3-numpy is installed the venv keeps it and the lock's numpy
# line is left out (the only difference from what CI tested; `faceonly models verify` runs after).
write_requirements() {
  local requirements=$PREFIX/requirements.txt tmp
  tmp=$(mktemp)
  if dpkg-query -W -f='${Status}' python3-numpy 2>/dev/null | grep -q "install ok installed"; then
    say "keeping apt's numpy $(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo '?') for picamera2"
    awk '/^numpy==/ {skip=1; next} skip && /^[[:space:]]/ {next} {skip=0; print}' "$SRC/requirements/terminal.txt" >"$tmp"
  else
    cp "$SRC/requirements/terminal.txt" "$tmp"
  fi
  run install -m 0644 "$tmp" "$requirements"
  rm -f "$tmp"
}

program() {
  if [[ ! -f "$SRC/models/manifest.json" ]]; then
    echo "install.sh: $SRC/models/manifest.json is missing: build the models first (see MODELS.md)" >&2
    exit 1
  fi
  run install -d -m 0755 "$PREFIX"
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "venv present: $VENV"
  else
    say "creating venv $VENV (with system site packages)"
    run rm -rf "$VENV"
    run /usr/bin/python3 -m venv --system-site-packages "$VENV"
  fi
  write_requirements
  say "installing the locked dependencies and faceonly from $SRC"
  run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r "$PREFIX/requirements.txt"
  run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation "$SRC"
  # The unit mounts /opt read-only: compile now so the service never tries to write bytecode.
  run "$VENV/bin/python" -m compileall -q "$VENV/lib"

  say "installing models into $PREFIX/models"
  local staging=$PREFIX/.models.new
  run rm -rf "$staging"
  run cp -r "$SRC/models" "$staging"
  run chmod -R u=rwX,go=rX "$staging"
  run "$VENV/bin/faceonly" models verify --models-dir "$staging"
  # Swap the verified copy in whole: a terminal never sees a half-copied models directory.
  run rm -rf "$PREFIX/.models.old"
  if [[ -d "$PREFIX/models" ]]; then
    run mv "$PREFIX/models" "$PREFIX/.models.old"
  fi
  run mv "$staging" "$PREFIX/models"
  run rm -rf "$PREFIX/.models.old"
  run install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
  run install -d -m 0755 "$PREFIX/docs"
  run install -m 0644 "$SRC"/docs/*.md "$PREFIX/docs/"
}

default_source() {
  if dpkg-query -W -f='${Status}' python3-picamera2 2>/dev/null | grep -q "install ok installed"; then
    echo picamera2
  else
    echo v4l2:0
  fi
}

config() {
  run install -d -m 0755 -o root -g root "$CONF_DIR"
  run install -m 0644 -o root -g root "$SRC/config.example.toml" "$CONF_DIR/config.example.toml"
  if [[ -e "$CONF" ]]; then
    say "keeping $CONF (see $CONF_DIR/config.example.toml for new keys)"
  else
    local terminal_id source tmp
    # The host name, reduced to what terminal_id accepts (no '.': NATS refuses it in client ids).
    terminal_id=$(hostname | tr -c 'A-Za-z0-9_\n-' '-' | sed 's/^[^A-Za-z0-9]*//' | cut -c1-64)
    source=$(default_source)
    say "writing $CONF (terminal_id=${terminal_id:-terminal-01}, source=$source)"
    tmp=$(mktemp)
    local edits=(-e "s/^terminal_id = .*/terminal_id = \"${terminal_id:-terminal-01}\"/" -e "s/^source = .*/source = \"$source\"/")
    # --kiosk and --voice switch the door screen and its voice on in a new config ([screen] section only).
    if ((kiosk)); then
      edits+=(-e '/^\[screen\]/,/^\[/ s/^enabled = false/enabled = true/')
    fi
    if ((voice)); then
      edits+=(-e '/^\[screen\]/,/^\[/ s/^voice = false/voice = true/')
    fi
    sed "${edits[@]}" "$SRC/config.example.toml" >"$tmp"
    if ((dry_run)); then
      diff -u "$SRC/config.example.toml" "$tmp" || true
    fi
    run install -m 0640 -o root -g "$SVC_USER" "$tmp" "$CONF"
    rm -f "$tmp"
  fi
  if ((!dry_run)) && ! "$VENV/bin/faceonly" run --config "$CONF" --validate-config >/dev/null; then
    echo "install.sh: $CONF does not validate (errors above); fix it before starting the service" >&2
    exit 1
  fi
}

unit() {
  say "installing $UNIT_PATH"
  run install -m 0644 "$SRC/systemd/$UNIT" "$UNIT_PATH"
  if systemd_running; then
    run systemctl daemon-reload
  fi
  # Without a running systemd (an image being prepared) `enable` still creates the wants/ symlink.
  run systemctl enable "$UNIT"
  if systemd_running && systemctl is-active --quiet "$UNIT"; then
    say "restarting the running service on the new version"
    run systemctl restart "$UNIT"
  fi
}

# The door screen's address from the config (the default where the venv cannot be asked, as in --dry-run).
screen_url() {
  local listen=127.0.0.1:8470
  if [[ -x "$VENV/bin/faceonly" && -r "$CONF" ]] && ((!dry_run)); then
    listen=$("$VENV/bin/faceonly" run --config "$CONF" --validate-config 2>/dev/null |
      "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["screen"]["listen"])')
  fi
  echo "http://$listen/"
}

kiosk_setup() {
  local url tmp
  url=$(screen_url)
  if [[ $url == *:0/ ]]; then
    echo "install.sh: [screen] listen in $CONF uses port 0; the kiosk needs a fixed port" >&2
    exit 1
  fi
  say "door screen kiosk: $KIOSK_DESKTOP opens $url in Chromium when the desktop session starts"
  run install -m 0755 "$SRC/scripts/kiosk/faceonly-kiosk" "$KIOSK_BIN"
  run install -d -m 0755 "$(dirname "$KIOSK_DESKTOP")"
  tmp=$(mktemp)
  sed "s|@URL@|$url|" "$SRC/scripts/kiosk/faceonly-kiosk.desktop" >"$tmp"
  run install -m 0644 "$tmp" "$KIOSK_DESKTOP"
  rm -f "$tmp"
}

voice_setup() {
  say "door screen voice: sound devices for the service ($VOICE_DROPIN)"
  run install -d -m 0755 "$DROPIN_DIR"
  run install -m 0644 "$SRC/systemd/faceonly.service.d/voice.conf" "$VOICE_DROPIN"
  run usermod --append --groups audio "$SVC_USER"
}

install_all() {
  apt_packages
  service_user
  program
  config
  if ((voice)); then
    voice_setup
  fi
  unit
  if ((kiosk)); then
    kiosk_setup
  fi
  say "installed. Edit $CONF (broker, terminal_id), then: systemctl start faceonly; journalctl -u faceonly -f"
}

# ---- uninstall --------------------------------------------------------------------------------

uninstall_all() {
  if [[ -e "$UNIT_PATH" ]]; then
    if systemd_running; then
      run systemctl disable --now "$UNIT"
    else
      run systemctl disable "$UNIT"
    fi
    run rm -f "$UNIT_PATH"
    if systemd_running; then
      run systemctl daemon-reload
    fi
  fi
  run rm -f "$KIOSK_BIN" "$KIOSK_DESKTOP" "$VOICE_DROPIN"
  run rm -rf "$PREFIX"
  if ((purge)); then
    say "purging $STATE_DIR, $CONF_DIR and user $SVC_USER"
    run rm -rf "$STATE_DIR" "$CONF_DIR"
    if getent passwd "$SVC_USER" >/dev/null; then
      run userdel "$SVC_USER"
    fi
    if getent group "$SVC_USER" >/dev/null; then
      run groupdel "$SVC_USER"
    fi
  else
    say "kept $STATE_DIR (keys, outbox, gallery), $CONF_DIR and user $SVC_USER; --purge removes them"
  fi
  say "uninstalled"
}

require_root "$@"
check_debian
if [[ $action == install ]]; then
  install_all
else
  uninstall_all
fi
