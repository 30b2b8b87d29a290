#!/usr/bin/env bash
# What the tests use beyond what tuner itself needs: Debian's Chromium for the
# dashboard's browser tests (tests/service/test_browser.py drives it with Playwright's
# Python package; Playwright's own browser download is not used) and systemd's
# systemd-analyze, which checks the units `tuner nightly --install` writes.
# (PostgreSQL is installed by scripts/start-postgres.sh.) Installs only what is
# missing; needs root (or sudo) when something is.
set -euo pipefail
packages=(chromium systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "tuner: please install ${missing[*]} with your package manager (the browser and systemd-unit tests skip without them, and fail under CI=true)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
