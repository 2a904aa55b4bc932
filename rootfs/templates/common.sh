# Shared by the Debian templates' customize hooks (sourced): what mmdebstrap
# leaves that differs between builds or belongs to one machine.
common_cleanup() {
    root=$1
    # The build's package source was a local copy of the pinned packages;
    # a VE gets Debian's archive (apt works offline too: dpkg, apt list).
    # (Each file is removed first: a link there must not be followed.)
    rm -f "$root/etc/apt/sources.list" "$root/etc/hostname" "$root/etc/resolv.conf" \
        "$root/etc/hosts"
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    cat >"$root/etc/apt/sources.list" <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    # Written per VE by vmmgr at start; never the build machine's.
    printf 'localhost\n' >"$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/systemd/random-seed"
    rm -f "$root"/etc/passwd- "$root"/etc/group- "$root"/etc/shadow- "$root"/etc/gshadow- \
        "$root"/etc/subuid- "$root"/etc/subgid-
    rm -f "$root"/var/lib/dpkg/*-old "$root"/var/cache/debconf/*-old
    find "$root/var/log" -type f -delete
    # Password ages are days since the epoch: the build's, not today's.
    day=$((SOURCE_DATE_EPOCH / 86400))
    sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$day:/" "$root/etc/shadow"
}
