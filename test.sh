#!/bin/sh
# Runs every check and test: formatting, lints, unit tests, then builds the
# image and boots it under QEMU for the end-to-end tests. Serial transcripts
# of the end-to-end tests are kept in target/qemu-tests/.
set -eu
cd "$(dirname "$0")"
. ./scripts/host-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo run -q --locked -p image -- build
cargo test --workspace --locked
