//! `/sbin/init` (and `/init` in the initramfs): PID 1 of the appliance.

fn main() {
    init::run()
}
