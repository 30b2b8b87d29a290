#!/usr/bin/env bash
# The Debian packages tuner uses: core binding (numactl, taskset) and the allocators
# it preloads; packages named as arguments are installed too (scripts/start-postgres.sh
# asks for postgresql). Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail
# g++: torch.compile's inductor builds its C++ kernels with it at compile time.
packages=(numactl util-linux libjemalloc2 libtcmalloc-minimal4 g++ "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "tuner: please install ${missing[*]} with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
