#!/bin/sh
# Runs every check and test: formatting, lints, unit tests, a short fuzz run of
# the control protocol decoder, then builds the image and boots it under QEMU
# for the end-to-end tests. Serial transcripts of the end-to-end tests are kept
# in target/qemu-tests/.
set -eu
cd "$(dirname "$0")"
. ./scripts/host-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo +nightly fuzz --help >/dev/null 2>&1; then
    (cd vmmgr/proto && cargo +nightly fuzz run decode -- -max_total_time="${VZ_FUZZ_SECONDS:-30}")
else
    echo "test.sh: cargo-fuzz or the nightly toolchain is missing; skipping the fuzz run" \
         "(cargo install cargo-fuzz)" >&2
fi
# Every template: the end-to-end tests boot VEs of each.
cargo run -q --locked -p image -- build --template all
cargo test --workspace --locked
