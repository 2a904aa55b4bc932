//! What `init` and `vmmgr` both do: the records in `/run/vz` that one of them
//! writes and the other reads (each format has one renderer and one parser,
//! here), rtnetlink (`rtnl`), mountinfo, and printing an error chain.

pub mod cgroupfs;
pub mod mountinfo;
pub mod rtnl;
pub mod run;

/// An error and its causes on one line: `step: cause: cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// Sets a network interface of the calling thread's network namespace up
/// (rtnetlink, [`rtnl`]).
pub fn interface_up(name: &str) -> std::io::Result<()> {
    let mut nl = rtnl::Rtnl::new()?;
    let index = nl.index(name)?;
    nl.set_up(index, true)
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "mounting /vz")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_print_every_cause_once() {
        let e = Outer(std::io::Error::other("no such device"));
        assert_eq!(super::error_chain(&e), "mounting /vz: no such device");
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_syscall() {
        assert!(super::interface_up("").is_err());
        assert!(super::interface_up("a-name-much-too-long").is_err());
    }
}
