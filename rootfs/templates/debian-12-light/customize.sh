#!/bin/sh
# mmdebstrap customize hook for debian-12-light: $1 is the new root.
set -eu
root=$1
# busybox is the init (the Essential set has none).
rm -f "$root/sbin/init"
ln -s /bin/busybox "$root/sbin/init"
# Host keys are made per VE (dropbear -R); none from the build.
rm -f "$root"/etc/dropbear/dropbear_*_host_key
. "$(dirname "$0")/../common.sh"
common_cleanup "$root"
