#!/usr/bin/env bash
# One command from a fresh clone to a working webinfer: installs pnpm (the version pinned in
# package.json), a software Vulkan driver when the machine has no GPU, the workspace's packages,
# builds everything, and runs the demo on the default GPU. Safe to run again.
#   WEBINFER_SKIP_DEMO=1      install and build only
#   WEBINFER_SOFTWARE_GPU=0   never install the software driver; =1 always
#   WEBINFER_BROWSER=1        also install Debian's Chromium for the browser tests (apps/web)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

pnpm_version=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$pnpm_version" ]; then
  echo "bootstrap: installing pnpm $pnpm_version"
  npm install -g --silent "pnpm@$pnpm_version"
fi

has_gpu() {
  ls /dev/nvidia0 /dev/dri/renderD* >/dev/null 2>&1
}
if [ "$(uname -s)" = Linux ]; then
  case "${WEBINFER_SOFTWARE_GPU:-auto}" in
    1) bash scripts/install-software-gpu.sh ;;
    0) ;;
    *) has_gpu || bash scripts/install-software-gpu.sh ;;
  esac
fi

if [ "${WEBINFER_BROWSER:-0}" = 1 ]; then
  bash scripts/install-browser.sh
fi

pnpm install --frozen-lockfile
pnpm build
if [ "${WEBINFER_SKIP_DEMO:-0}" != 1 ]; then
  node apps/bench/dist/demo.js
fi
