#!/bin/sh
# Builds the appliance image (out/vz.img) and boots it under QEMU with the
# serial console on this terminal. Extra arguments go to `image run`
# (e.g. --kvm, --persistent, --hostfwd tcp:2222:22). ctrl-a x quits.
set -eu
cd "$(dirname "$0")"
. ./scripts/host-deps.sh
cargo run -q -p image -- build
exec cargo run -q -p image -- run "$@"
