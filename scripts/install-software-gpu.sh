#!/usr/bin/env bash
# Installs what a GPU-less Debian/Ubuntu machine needs to run webinfer's tests on real WebGPU:
# Mesa's lavapipe (software Vulkan) new enough for Dawn. Debian 12's own Mesa (22.3) is too old
# (Dawn rejects it), so on bookworm we take mesa-vulkan-drivers + libvulkan1 from bookworm-backports
# (Mesa 25: shader-f16, subgroups, timestamp-query). Idempotent: re-running changes nothing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

have_lavapipe() {
  # Mesa >= 24 ships the lavapipe ICD as lvp_icd.*.json; check the driver and the loader.
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p | grep -q 'libvulkan.so.1' &&
    dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qvE '^(2[0-3])\.'
}

if have_lavapipe; then
  echo "install-software-gpu: lavapipe already installed ($(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
  exit 0
fi

. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
target=""
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.list
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee "$list" >/dev/null
  fi
  target="-t bookworm-backports"
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $target mesa-vulkan-drivers libvulkan1 >/dev/null
echo "install-software-gpu: installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
