//! Scratch: boots one appliance and runs shell commands from /tmp/repl/in.N,
//! answers in out.N (not committed).
use qemu_tests::Appliance;
fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::var("REPL").unwrap_or("/tmp/repl".into()));
    std::fs::create_dir_all(&dir)?;
    let mut a = Appliance::boot("explore")?;
    a.enter_shell()?;
    std::fs::write(dir.join("ready"), "")?;
    let mut n = 0;
    loop {
        let inp = dir.join(format!("in.{n}"));
        if let Ok(cmd) = std::fs::read_to_string(&inp) {
            if cmd.trim() == "quit" {
                break;
            }
            let (out, rc) = a.run_rc(cmd.trim())?;
            std::fs::write(dir.join(format!("out.{n}")), format!("{out}\nrc={rc}\n"))?;
            n += 1;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(())
}
