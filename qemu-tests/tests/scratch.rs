use qemu_tests::Appliance;
#[test]
fn scratch() -> anyhow::Result<()> {
    let mut a = Appliance::boot("scratch")?;
    for c in [
        "vzctl create 101 --hostname web1 --name web",
        "vzctl start 101",
        "vzlist -a",
        "vzctl status 101",
        "vzctl exec2 101 ps",
        "vzctl exec 101 hostname",
        "vzctl exec2 101 id",
        "vzlist -j -o ctid,status,name",
        "vzctl stop 101",
        "vzlist -a",
        "log 30",
    ] {
        let o = a.console(c)?;
        eprintln!("=== {c}\n{o}");
    }
    Ok(())
}
