#!/usr/bin/env bash
# Sets up everything hostprof needs on a Debian bookworm host, idempotently:
#   - system packages: Debian's bcc (bpfcc-tools, python3-bpfcc, libbpfcc), linux-libc-dev,
#     golang-go (go tool pprof, for tests), chromium (UI tests), debootstrap (test interpreters)
#   - a venv in .venv with hostprof installed in editable mode, the native core built,
#     and Debian's bcc module linked in (PyPI's "bcc" is an unrelated package)
# Usage: scripts/setup.sh [--no-system] [--pythons]
#   --no-system  skip apt (for a machine that already has the packages)
#   --pythons    also build the Debian chroot interpreters used by the tests (3.9/3.13/3.14/3.15)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SYSTEM=1; PYTHONS=0
for a in "$@"; do
  case "$a" in
    --no-system) SYSTEM=0 ;;
    --pythons) PYTHONS=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
log() { printf '[setup] %s\n' "$*"; }

APT_PKGS=(bpfcc-tools python3-bpfcc libbpfcc linux-libc-dev golang-go chromium debootstrap python3.11)
if [ "$SYSTEM" = 1 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "setup.sh: need root to install: ${missing[*]} (rerun with sudo)" >&2; exit 4
    fi
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "system packages present"
  fi
fi

# The interpreter for the venv: pyenv's 3.11 when present (the tested one), else python3.
PY=${HOSTPROF_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in "$HOME/.pyenv/versions/3.11.7/bin/python3" /root/.pyenv/versions/3.11.7/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$(command -v "$cand"); break; fi
  done
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY=$ROOT/.venv/bin/python
stamp=.venv/.hostprof-deps
want=$(cat pyproject.toml setup.py | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing python dependencies"
  "$VPY" -m pip install -q -U pip setuptools wheel "Cython>=3.0" numpy 2>&1 | grep -v '^WARNING: Location' || true
  "$VPY" -m pip install -q --no-build-isolation -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
  "$VPY" -c 'import hostprof.native._core' || { echo "setup.sh: the native core did not build" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
log "building the native core"
"$VPY" setup.py -q build_ext --inplace 2>&1 | grep -vE 'BetaConfiguration|warnings.warn|^$' || true

# Debian's bcc: a symlink to just that package (not the whole dist-packages).
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$SITE/bcc" ]; then
  ln -s /usr/lib/python3/dist-packages/bcc "$SITE/bcc"
  log "linked Debian's bcc into the venv"
fi

if [ "$PYTHONS" = 1 ]; then
  DEST=${HOSTPROF_PYTHONS:-/var/cache/hostprof/pythons}
  TOOL=${HOSTPROF_MAKE_PYTHONS:-$ROOT/../shared/tools/make-pythons.sh}
  if [ -x "$TOOL" ] || [ -f "$TOOL" ]; then
    log "building test interpreters in $DEST"
    bash "$TOOL" "$DEST" --ft
  else
    log "no make-pythons.sh at $TOOL: chroot interpreter tests will be skipped"
  fi
fi
log "done: $ROOT/.venv/bin/hostprof"
