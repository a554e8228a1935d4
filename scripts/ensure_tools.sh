#!/bin/sh
# Installs what dptrain needs and the machine lacks: deno (through npm,
# pinned) and nats-server (through apt). Safe to run again: it only installs
# what is missing or at the wrong version.
set -eu

DENO_VERSION=2.9.6

have_deno() {
  command -v deno >/dev/null 2>&1 &&
    deno --version 2>/dev/null | head -n 1 | grep -q " $DENO_VERSION "
}

if ! have_deno; then
  echo "ensure_tools: installing deno $DENO_VERSION through npm" >&2
  npm install --global --no-fund --no-audit "deno@$DENO_VERSION" >&2
fi

if ! command -v nats-server >/dev/null 2>&1; then
  echo "ensure_tools: installing nats-server through apt" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >&2
fi

# Deno's WebGPU needs a Vulkan driver; Mesa's software one (llvmpipe) lets the
# WebGPU tests run on machines without a GPU. Optional: tests skip without it.
if [ "${DPTRAIN_WITH_VULKAN:-0}" = "1" ] &&
  ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
  echo "ensure_tools: installing mesa-vulkan-drivers through apt" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    mesa-vulkan-drivers >&2
fi

# Fetch the pinned npm packages into node_modules/ (deno.lock is frozen so a
# changed dependency fails loudly instead of drifting).
deno install --frozen >&2
