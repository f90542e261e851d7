#!/usr/bin/env bash
# The one command that runs every test of the project.
# Installs what it needs from the package registries, then: format check, lints, and the whole
# test suite (unit, integration against the simulator over real SSH/HTTPS, root tests with loop
# devices and real mounts), the Helm chart checks (scripts/chart-test.sh), then the real NVMe/TCP
# tests in a QEMU VM (scripts/vm-e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# The controller suite once more against each device personality the simulator can play:
# the controller must be safe whatever RouterOS answers (docs/controller.md, "The rule").
# `--workspace` keeps the workspace's feature set, so the build above is reused (a one-package
# build unifies features differently and would compile the dependencies a second time); the
# simulator's own `rest` suite comes along, briefly.
for quirk in generic-errors duplicate-slots reuse-existing-file; do
  step "controller suite with the simulator quirk $quirk"
  RDS_CSI_TEST_QUIRKS=$quirk cargo test --workspace --locked --test controller --test rest \
    --test device_quirks --test snapshots --test subvolume_volumes --test copy_snapshots
done

# Chaos: the binary's simulator, controller and node killed and restarted under concurrent
# CSI cycles while the device drops requests and loses replies; prints its figures.
# RDS_CSI_CHAOS_CYCLES=1000 for the long form.
step "chaos suite (short form)"
cargo test --workspace --locked --test chaos -- --ignored --nocapture

step "Helm chart, plain manifests (scripts/chart-test.sh)"
scripts/chart-test.sh

# The image holds the tested debug build (stripped): what is checked is that the image is
# complete and its binary runs there; users build it with the release binary.
step "container image (scripts/image.sh)"
cargo build --locked --bin rds-csi
RDS_CSI_BINARY=target/debug/rds-csi scripts/image.sh

step "NVMe/TCP tests in the QEMU lab"
scripts/vm-e2e.sh

step "all tests passed"
