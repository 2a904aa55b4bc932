//! The `vesetup server` protocol with the real binary, unprivileged: the
//! server says it is ready, forks one run per request, and each run's
//! stderr and channel are the ones sent with its request. (The runs fail at
//! once here: no spec comes; the kernel work of a start is covered by the
//! end-to-end tests.)

use std::os::fd::AsFd;
use vmmgr::setup::launch::{Launcher, Run};

#[test]
fn runs_are_forked_by_one_server_with_their_own_stderr_and_channel() {
    let l = Launcher::new(std::path::Path::new(env!("CARGO_BIN_EXE_vesetup")));
    for _ in 0..3 {
        let (ours, theirs) = vmmgr::fdpass::pair().expect("pair");
        let run = l.launch(theirs.as_fd()).expect("launch");
        drop(theirs);
        assert!(matches!(run, Run::Forked(_)), "{run:?}");
        // No spec: the run reports that on its stderr and exits, which
        // closes its end of the channel.
        drop(ours);
        let (err, status) = run.finish();
        assert!(err.contains("vesetup:"), "its stderr: {err:?}");
        assert!(status.is_none());
    }
    let (ours, theirs) = vmmgr::fdpass::pair().expect("pair");
    let run = l.launch(theirs.as_fd()).expect("launch");
    drop(theirs);
    // The run holds the channel until it gives up on the spec: a frame
    // that is not one makes it answer nothing and exit.
    vmmgr::fdpass::send(ours.as_fd(), b"not a frame", None).expect("send");
    let mut buf = [0u8; 64];
    let (n, fd) = vmmgr::fdpass::recv(ours.as_fd(), &mut buf).expect("recv");
    assert_eq!((n, fd.is_none()), (0, true), "end of the channel");
    let (err, _) = run.finish();
    assert!(err.contains("vesetup:"), "its stderr: {err:?}");
}
