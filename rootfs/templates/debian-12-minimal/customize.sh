#!/bin/sh
# mmdebstrap customize hook for debian-12-minimal: $1 is the new root.
set -eu
root=$1
# Units that cannot work in a VE: agetty on /dev/console (a /dev/null bind in
# a VE) and the first-boot prompt (the empty machine-id makes every first
# start a "first boot"; the VE gets its machine-id from systemd then).
for u in console-getty.service systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
done
. "$(dirname "$0")/../common.sh"
common_cleanup "$root"
