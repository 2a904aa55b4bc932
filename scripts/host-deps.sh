#!/bin/sh
# Installs the Debian packages the image build and the tests need, when they
# are missing. Sourced by ./run.sh and ./test.sh; safe to run on its own.
set -eu

# program -> package
need="
apt-get:apt
dpkg-deb:dpkg
mformat:mtools
mcopy:mtools
sfdisk:fdisk
mkfs.erofs:erofs-utils
mkfs.ext4:e2fsprogs
qemu-system-x86_64:qemu-system-x86
qemu-img:qemu-utils
qemu-io:qemu-utils
git:git
"
missing=""
for pair in $need; do
    prog=${pair%%:*}
    pkg=${pair#*:}
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null 2>&1; then
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The image build fetches pinned packages by name: apt needs an index.
if [ -n "$missing" ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    echo "host-deps: apt-get update" >&2
    as_root apt-get update -q
fi
if [ -n "$missing" ]; then
    echo "host-deps: installing$missing" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "host-deps: cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
fi
