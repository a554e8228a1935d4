#!/bin/sh
# Installs what dptrain needs and the machine lacks: deno (through npm,
# pinned), nats-server, openssl and iproute2 (through apt) and the pinned npm
# packages. Safe to run again: it only installs what is missing or at the wrong
# version.
#
# DPTRAIN_WITH_VULKAN=1 also installs Mesa's software Vulkan driver, so that
# the WebGPU tests run on machines without a GPU (CI sets it).
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

packages=""
command -v nats-server >/dev/null 2>&1 || packages="nats-server"
# openssl makes the throwaway CA of the TLS tests; iproute2's `ip netns`
# builds the several-hosts network of the partition test.
command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
command -v ip >/dev/null 2>&1 || packages="$packages iproute2"
if [ "${DPTRAIN_WITH_VULKAN:-0}" = "1" ] &&
  ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
  packages="$packages mesa-vulkan-drivers"
fi

if [ -n "$packages" ]; then
  echo "ensure_tools: installing$packages through apt" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  # shellcheck disable=SC2086 # the list is meant to split into words
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $packages >&2
fi

# Fetch the pinned npm packages into node_modules/ (deno.lock is frozen, so
# a changed dependency fails loudly instead of drifting).
deno install --frozen >&2
