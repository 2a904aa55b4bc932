#!/bin/sh
# mmdebstrap customize hook for debian-12-web: $1 is the new root.
set -eu
root=$1
# No ttys in a VE: the getty lines would respawn-fail forever. SIGPWR (the
# template's HALT_SIGNAL) halts: sysvinit runs the powerwait line.
sed -i -E -e '/^[0-9]+:[0-9]+:respawn:\/sbin\/getty/d' \
    -e 's|^pf::powerwait:.*|pf::powerwait:/sbin/shutdown -t1 -h -P now|' \
    "$root/etc/inittab"
grep -q '^pf::powerwait:/sbin/shutdown' "$root/etc/inittab"
# Disk checks and unmounts belong to the appliance.
for s in checkroot.sh checkfs.sh checkroot-bootclean.sh; do
    chroot "$root" update-rc.d "$s" disable >/dev/null 2>&1
done
for s in umountfs umountroot; do
    chroot "$root" update-rc.d -f "$s" remove >/dev/null 2>&1
done
chroot "$root" update-rc.d ssh-hostkeys defaults >/dev/null
# The kernel log is the appliance's (reading /proc/kmsg needs CAP_SYSLOG).
sed -i 's/^SYSLOGD_OPTS="--no-forward"$/SYSLOGD_OPTS="--no-forward --no-klog"/' \
    "$root/etc/default/inetutils-syslogd"
grep -q '^SYSLOGD_OPTS="--no-forward --no-klog"$' "$root/etc/default/inetutils-syslogd"
chroot "$root" a2enconf vz >/dev/null
# Prefork: a smaller idle child than the event MPM's (conf-available/vz.conf).
chroot "$root" a2dismod -q -f mpm_event >/dev/null
chroot "$root" a2enmod -q mpm_prefork >/dev/null
# Debian enables 19 modules by default; a VE serving files needs few of
# them. Each one left out is about 28 kB of Apache's anonymous memory and
# six mappings in both Apache processes of every VE (the density
# experiment in docs/benchmarks.md); `a2enmod NAME` in a VE brings one back.
# Kept: authz_core, authz_host, alias, dir, mime, reqtimeout (slow-client
# protection) and the MPM.
chroot "$root" a2dismod -q -f access_compat auth_basic authn_core authn_file \
    authz_user autoindex deflate env filter negotiation setenvif status >/dev/null
. "$(dirname "$0")/../common.sh"
common_cleanup "$root"
