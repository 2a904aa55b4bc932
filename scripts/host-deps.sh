#!/bin/sh
# Installs the Debian packages the image build and the tests need, when they
# are missing, as one consistent set, then checks that every tool is there.
# Sourced by ./run.sh, ./test.sh and .ci/run; safe to run on its own.
#
# QEMU: qemu-system-x86 and qemu-utils must come from the same QEMU release.
# A machine may carry a newer qemu-utils (e.g. from backports) than the
# qemu-system-x86 its archive offers; installing qemu-system-x86 alone then
# makes apt *remove* qemu-utils (qemu-img), and naming both makes apt give up.
# So when either is missing, both are installed at qemu-system-x86's candidate
# version (a downgrade of qemu-utils if needed: the tools we use are in both).
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
debugfs:e2fsprogs
mmdebstrap:mmdebstrap
gcc-12:gcc-12
make:make
strip:binutils
qemu-system-x86_64:qemu-system-x86
qemu-img:qemu-utils
qemu-io:qemu-utils
git:git
nft:nftables
"
# Extra packages a caller wants (CI adds its own), as "prog:package" pairs.
need="$need ${VZ_HOST_DEPS_EXTRA:-}"

has() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

missing=""
for pair in $need; do
    prog=${pair%%:*}
    pkg=${pair#*:}
    if ! has "$prog"; then
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The image build fetches pinned packages by name: apt needs an index.
if [ -n "$missing" ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    echo "host-deps: apt-get update" >&2
    as_root apt-get update -q
fi
if [ -n "$missing" ]; then
    install=""
    for pkg in $missing; do
        case "$pkg" in qemu-system-x86 | qemu-utils | mmdebstrap) ;; *) install="$install $pkg" ;; esac
    done
    case " $missing " in
    *" qemu-system-x86 "* | *" qemu-utils "*)
        qv=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
        if [ -z "$qv" ] || [ "$qv" = "(none)" ]; then
            echo "host-deps: apt has no qemu-system-x86 candidate: check /etc/apt/sources.list" >&2
            exit 1
        fi
        # Same release for both; apt picks the matching qemu-system-common.
        install="$install qemu-system-x86=$qv qemu-utils=$qv"
        ;;
    esac
    if [ -n "$install" ]; then
        echo "host-deps: installing$install" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades $install
    fi
    # mmdebstrap (the OS templates) alone, without its Recommends: those are
    # for modes we do not use (fakechroot, user namespaces as non-root).
    case " $missing " in *" mmdebstrap "*)
        echo "host-deps: installing mmdebstrap (no recommends)" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
        ;;
    esac
fi

# Every tool must be there now (apt may have removed one to install another).
gone=""
for pair in $need; do
    prog=${pair%%:*}
    has "$prog" || gone="$gone $prog(${pair#*:})"
done
if [ -n "$gone" ]; then
    echo "host-deps: still missing after the install:$gone" >&2
    echo "host-deps: install those packages by hand, then run this again" >&2
    exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "host-deps: cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
fi
