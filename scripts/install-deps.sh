#!/usr/bin/env bash
# Installs the system packages the test suite and the demo use, from Debian's registry.
# Idempotent: does nothing when every tool is already present.
set -euo pipefail

# tool -> package
declare -A need=(
  [ssh]=openssh-client
  [curl]=curl
  [mkfs.ext4]=e2fsprogs
  [mkfs.xfs]=xfsprogs
  [blkid]=util-linux
  [losetup]=mount
  [ip]=iproute2
)

missing=()
for tool in "${!need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
