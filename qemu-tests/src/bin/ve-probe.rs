//! `ve-probe`: a test helper run inside a VE by the end-to-end tests, for
//! the few checks busybox cannot make (SysV shared memory, module loading).
//! Prints one line per check: `<check>: <result>`.

use std::ffi::CString;

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let key: i32 = args.get(1).and_then(|k| k.parse().ok()).unwrap_or(0x5645);
    match args.first().map(String::as_str) {
        Some("shm-create") => {
            // SAFETY: shmget takes plain integers.
            let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
            if id >= 0 {
                println!("shm-create: id {id}")
            } else {
                println!("shm-create: error {}", errno())
            }
        }
        Some("shm-find") => {
            // SAFETY: shmget takes plain integers.
            let id = unsafe { libc::shmget(key, 0, 0) };
            if id >= 0 {
                println!("shm-find: found {id}")
            } else {
                println!("shm-find: absent ({})", errno())
            }
        }
        Some("module") => {
            let f = std::fs::File::open("/bin/busybox");
            let rc = match &f {
                // SAFETY: a valid fd, an empty NUL-terminated parameter string, flags 0.
                Ok(f) => unsafe {
                    use std::os::fd::AsRawFd;
                    libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0)
                },
                Err(_) => -1,
            };
            if rc == 0 {
                println!("module: loaded")
            } else {
                println!("module: denied ({})", errno())
            }
        }
        Some("mknod") => {
            let path = CString::new("/tmp/disk").unwrap_or_default();
            // SAFETY: a valid path; mknod only reads it.
            let rc =
                unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(254, 0)) };
            if rc == 0 {
                println!("mknod: created")
            } else {
                println!("mknod: denied ({})", errno())
            }
        }
        _ => {
            eprintln!("usage: ve-probe shm-create|shm-find [KEY] | module | mknod");
            std::process::exit(2);
        }
    }
}
