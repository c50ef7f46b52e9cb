#!/usr/bin/env bash
# Installs Debian's Chromium for the browser end-to-end tests (apps/web): WebGPU runs there on
# SwiftShader, so no GPU is needed. Playwright drives this system browser (playwright-core, no
# browser download). Idempotent: re-running changes nothing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if [ -x /usr/bin/chromium ]; then
  echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
