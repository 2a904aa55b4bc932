//! Which devices a VE may open: a cgroup device program (eBPF,
//! `BPF_PROG_TYPE_CGROUP_DEVICE`) on the VE's appliance-owned cgroup,
//! attached with `BPF_F_ALLOW_MULTI` so that it holds for every group below
//! (the VE's own and its exec leaves) and nothing there can lift it, and
//! replaced live when DEVNODES or DEVICES change (the new program is
//! attached before the old ones are detached: during the swap both apply,
//! so access only narrows). VE root can neither load a program (CAP_BPF of
//! the initial namespace) nor detach ours (that needs the program's fd).
//!
//! A VE may always use the nodes its /dev has from the start (null, zero,
//! full, random, urandom, tty, its ptys) and what its config grants; the
//! nodes DEVNODES names are also bound into its /dev (`setup::devnodes`).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use vzconfig::resources::{Access, DevNode, DevRule};

/// One rule of the program: type, numbers (None: any), access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `b` or `c`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
}

/// What every VE may open: the nodes of its /dev and its ptys.
pub const DEFAULT: &[(u32, Option<u32>)] = &[
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(2)),
    // The ptys of the VE's devpts instance (UNIX98: majors 136 to 143).
    (136, None),
    (137, None),
    (138, None),
    (139, None),
    (140, None),
    (141, None),
    (142, None),
    (143, None),
];

fn from_access(kind: char, major: Option<u32>, minor: Option<u32>, a: Access) -> Rule {
    Rule {
        kind,
        major,
        minor,
        read: a.read,
        write: a.write,
    }
}

/// A device's type (`b`/`c`) and numbers.
pub type Node = (char, u32, u32);

/// The rules for a VE: the defaults, its DEVNODES (numbers of the
/// appliance's nodes, found by `stat`), its DEVICES.
pub fn rules(
    devnodes: &[DevNode],
    devices: &[DevRule],
    stat: &dyn Fn(&str) -> Option<Node>,
) -> Result<Vec<Rule>, String> {
    let mut out: Vec<Rule> = DEFAULT
        .iter()
        .map(|(ma, mi)| Rule {
            kind: 'c',
            major: Some(*ma),
            minor: *mi,
            read: true,
            write: true,
        })
        .collect();
    for d in devnodes.iter().filter(|d| d.access.any()) {
        let (kind, ma, mi) = stat(&d.path).ok_or_else(|| {
            format!(
                "DEVNODES {}: /dev/{} is not a device node on the appliance \
                 (is its driver loaded?)",
                d.path, d.path
            )
        })?;
        out.push(from_access(kind, Some(ma), Some(mi), d.access));
    }
    for d in devices.iter().filter(|d| d.access.any()) {
        out.push(from_access(d.kind, Some(d.major), d.minor, d.access));
    }
    Ok(out)
}

/// The type and numbers of the appliance's `/dev/<path>`.
pub fn stat_node(path: &str) -> Option<Node> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(format!("/dev/{path}")).ok()?;
    let kind = if m.file_type().is_char_device() {
        'c'
    } else if m.file_type().is_block_device() {
        'b'
    } else {
        return None;
    };
    let r = m.rdev();
    Some((kind, rustix::fs::major(r), rustix::fs::minor(r)))
}

// The program, as runc and crun build it: the request's type, access,
// major and minor in r2..r5, one block per rule that jumps to the next
// block on any mismatch and returns 1 on a match, 0 at the end.
const LDX_W: u8 = 0x61;
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const MOV32_X: u8 = 0xbc;
const MOV64_K: u8 = 0xb7;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

/// The program's instructions for `rules`.
pub fn program(rules: &[Rule]) -> Vec<[u8; 8]> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block = Vec::new();
        let ty = if r.kind == 'b' { 1 } else { 2 };
        // Jumps are patched to the block's end below (offset placeholder).
        block.push((JNE_K, 2, 0, ty));
        // The request's access must be within the rule's (mknod never is).
        let allowed = (if r.read { 2 } else { 0 }) | (if r.write { 4 } else { 0 });
        block.push((MOV32_X, 1, 3, 0));
        block.push((AND32_K, 1, 0, allowed));
        block.push((JNE_X, 1, 3, 0));
        if let Some(ma) = r.major {
            block.push((JNE_K, 4, 0, ma as i32));
        }
        if let Some(mi) = r.minor {
            block.push((JNE_K, 5, 0, mi as i32));
        }
        let n = block.len();
        // After the block's tests: r0 = 1; exit (2 instructions).
        for (i, (code, dst, src, imm)) in block.into_iter().enumerate() {
            let is_jump = code == JNE_K || code == JNE_X;
            let off = if is_jump { (n - i - 1 + 2) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
        p.push(insn(MOV64_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as bytes (144 in 6.1); fields written at their offsets.
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed bpf_attr of the size we pass, with the
    // fields `cmd` reads set; pointers in it outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

/// Loads `insns` as a cgroup device program; the kernel's verifier log
/// goes into the error if it refuses.
pub fn load(insns: &[[u8; 8]]) -> std::io::Result<OwnedFd> {
    let license = c"GPL";
    let attr = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64);
        if let Some(log) = log {
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        a
    };
    // Without the verifier's log first (a long program's log could fill
    // any buffer and fail the load with ENOSPC); with it only to explain a
    // refusal.
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr(None)) {
        // SAFETY: BPF_PROG_LOAD returned a new descriptor we own.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let mut log = vec![0u8; 64 * 1024];
    match bpf(BPF_PROG_LOAD, &mut attr(Some(&mut log))) {
        // SAFETY: BPF_PROG_LOAD returned a new descriptor we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            Err(std::io::Error::new(
                e.kind(),
                format!(
                    "loading the device program: {e}: {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            ))
        }
    }
}

/// Ids of the device programs attached to the cgroup `cg` itself.
fn attached(cg: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut a = Attr::new();
    a.u32(0, cg.as_raw_fd() as u32)
        .u32(4, BPF_CGROUP_DEVICE)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut a)?;
    let n = (a.get_u32(24) as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}

/// A descriptor of the loaded program with id `id`.
fn prog_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut g = Attr::new();
    g.u32(0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut g)?;
    // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of the loaded program `prog` (`bpf_prog_info.id`).
fn prog_id(prog: BorrowedFd<'_>) -> std::io::Result<u32> {
    // struct bpf_prog_info begins with its type and id; the kernel fills
    // only as much of it as we give room for.
    let mut info = [0u32; 2];
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, std::mem::size_of_val(&info) as u32)
        .u64(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    Ok(info[1])
}

/// Which of `old` (the ids attached to a cgroup) to detach, and whether
/// `ours` must be attached first, to leave exactly `ours` in force. A
/// program is attached to a cgroup at most once (the kernel refuses a
/// second attach with EINVAL): a change that comes back to the rules in
/// force keeps their program.
fn plan(old: &[u32], ours: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let attach = ours
        .iter()
        .filter(|id| !old.contains(id))
        .copied()
        .collect();
    let detach = old
        .iter()
        .filter(|id| !ours.contains(id))
        .copied()
        .collect();
    (attach, detach)
}

/// Attaches `prog` to the cgroup `cg` (ALLOW_MULTI) unless it is there
/// already, then detaches every other device program that was there
/// before.
pub fn replace(cg: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> std::io::Result<()> {
    replace_all(cg, &[prog])
}

/// Leaves exactly `progs` attached to `cg`: attaches those missing first,
/// then detaches the others (so access only narrows meanwhile).
fn replace_all(cg: BorrowedFd<'_>, progs: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let old = attached(cg)?;
    let ids = progs
        .iter()
        .map(|p| prog_id(*p))
        .collect::<std::io::Result<Vec<u32>>>()?;
    let (attach, detach) = plan(&old, &ids);
    for (prog, id) in progs.iter().zip(&ids) {
        if !attach.contains(id) {
            continue;
        }
        let mut a = Attr::new();
        a.u32(0, cg.as_raw_fd() as u32)
            .u32(4, prog.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE)
            .u32(12, BPF_F_ALLOW_MULTI);
        bpf(BPF_PROG_ATTACH, &mut a)?;
    }
    for id in detach {
        let fd = match prog_by_id(id) {
            Ok(fd) => fd,
            // Gone meanwhile: nothing left to do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            // Still attached, still narrowing: the change is not done.
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("the previous device program {id} stays attached: {e}"),
                ))
            }
        };
        let mut d = Attr::new();
        d.u32(0, cg.as_raw_fd() as u32)
            .u32(4, fd.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut d) {
            // Detached from this cgroup meanwhile (a shared program lives
            // on in other VEs' cgroups, so its id still resolves).
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The device programs in force on a VE's cgroup, held so that a change
/// can be undone exactly (no rules rebuilt, no verifier run).
#[derive(Debug)]
pub struct InForce {
    cg: std::path::PathBuf,
    progs: Vec<OwnedFd>,
}

fn open_cgroup(cg: &std::path::Path) -> Result<OwnedFd, String> {
    rustix::fs::open(
        cg,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", cg.display()))
}

impl InForce {
    /// What is attached to the cgroup `cg` now.
    pub fn of(cg: &std::path::Path) -> Result<InForce, String> {
        use std::os::fd::AsFd;
        let dir = open_cgroup(cg)?;
        let ids = attached(dir.as_fd())
            .map_err(|e| format!("the device programs on {}: {e}", cg.display()))?;
        let mut progs = Vec::new();
        for id in ids {
            progs.push(
                prog_by_id(id)
                    .map_err(|e| format!("device program {id} on {}: {e}", cg.display()))?,
            );
        }
        Ok(InForce {
            cg: cg.to_owned(),
            progs,
        })
    }

    /// Puts these programs back in force, alone (the ones attached since
    /// are detached after).
    pub fn restore(&self) -> Result<(), String> {
        use std::os::fd::AsFd;
        let dir = open_cgroup(&self.cg)?;
        let progs: Vec<BorrowedFd<'_>> = self.progs.iter().map(|p| p.as_fd()).collect();
        replace_all(dir.as_fd(), &progs).map_err(|e| {
            format!(
                "putting the device program back on {}: {e}",
                self.cg.display()
            )
        })
    }
}

/// Programs loaded before, by their instructions, most recently used last.
/// Most VEs have the same rules, so they share one program: a start runs
/// no verifier, and the kernel holds one program for all of them. A device
/// program keeps no state (no maps), so sharing it joins nothing between
/// VEs; a VE's cgroup keeps its program alive after it leaves this list.
static LOADED: Mutex<Loaded<OwnedFd>> = Mutex::new(Vec::new());
/// Programs (`P`) by their instructions, most recently used last.
type Loaded<P> = Vec<(Vec<[u8; 8]>, Arc<P>)>;
/// How many distinct rule sets [`LOADED`] keeps.
const LOADED_MAX: usize = 8;

/// The loaded program for `insns`: the one loaded before, or a new one.
fn shared(insns: Vec<[u8; 8]>) -> std::io::Result<Arc<OwnedFd>> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    shared_in(&mut loaded, insns, load)
}

/// [`shared`] over the list `loaded`, loading with `load`.
fn shared_in<P>(
    loaded: &mut Loaded<P>,
    insns: Vec<[u8; 8]>,
    load: impl FnOnce(&[[u8; 8]]) -> std::io::Result<P>,
) -> std::io::Result<Arc<P>> {
    let prog = match loaded.iter().position(|(i, _)| *i == insns) {
        Some(at) => loaded.remove(at).1,
        None => Arc::new(load(&insns)?),
    };
    if loaded.len() >= LOADED_MAX {
        loaded.remove(0);
    }
    loaded.push((insns, Arc::clone(&prog)));
    Ok(prog)
}

/// Builds, loads and puts in place the device program of the VE whose
/// cgroup directory is `cg`.
pub fn apply(
    cg: &std::path::Path,
    devnodes: &[DevNode],
    devices: &[DevRule],
) -> Result<(), String> {
    let rules = rules(devnodes, devices, &stat_node)?;
    let prog = shared(program(&rules)).map_err(|e| e.to_string())?;
    let dir = open_cgroup(cg)?;
    use std::os::fd::AsFd;
    replace(dir.as_fd(), prog.as_fd())
        .map_err(|e| format!("attaching the device program to {}: {e}", cg.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on a request, as the kernel would (the few opcodes
    /// we emit).
    fn run(p: &[[u8; 8]], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i[1] & 0x0f) as usize, (i[1] >> 4) as usize);
            let off = i16::from_le_bytes([i[2], i[3]]);
            let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]);
            pc += 1;
            match i[0] {
                LDX_W => r[dst] = u64::from(ctx[off as usize / 4]),
                AND32_K => r[dst] = (r[dst] as u32 & imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> imm) as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                MOV64_K => r[dst] = imm as i64 as u64,
                JNE_K if r[dst] != imm as i64 as u64 => pc = (pc as i64 + i64::from(off)) as usize,
                JNE_X if r[dst] != r[src] => pc = (pc as i64 + i64::from(off)) as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    const R: u32 = 2;
    const W: u32 = 4;
    const MKNOD: u32 = 1;

    #[test]
    fn the_program_allows_exactly_the_rules() {
        let tun = DevNode {
            path: "net/tun".into(),
            access: Access {
                read: true,
                write: true,
                quota: false,
            },
        };
        let disk = DevRule {
            kind: 'b',
            major: 8,
            minor: None,
            access: Access {
                read: true,
                write: false,
                quota: false,
            },
        };
        let stat = |p: &str| (p == "net/tun").then_some(('c', 10, 200));
        let r = rules(&[tun], &[disk], &stat).expect("rules");
        let p = program(&r);
        // Defaults: /dev/null read-write, a pty, ptmx.
        assert_eq!(run(&p, 2, R | W, 1, 3), 1);
        assert_eq!(run(&p, 2, R | W, 136, 7), 1);
        assert_eq!(run(&p, 2, R | W, 5, 2), 1);
        // Granted: tun, and the disk read-only.
        assert_eq!(run(&p, 2, R | W, 10, 200), 1);
        assert_eq!(run(&p, 1, R, 8, 1), 1);
        assert_eq!(run(&p, 1, R | W, 8, 1), 0, "the disk is read-only");
        // Not granted: fuse, kmsg, mem, a char device with the disk's numbers.
        assert_eq!(run(&p, 2, R | W, 10, 229), 0);
        assert_eq!(run(&p, 2, R, 1, 11), 0);
        assert_eq!(run(&p, 2, R, 1, 1), 0);
        assert_eq!(run(&p, 2, R, 8, 1), 0);
        // mknod is never allowed, not even of a granted node.
        assert_eq!(run(&p, 2, MKNOD, 1, 3), 0);
        assert_eq!(run(&p, 2, MKNOD, 10, 200), 0);
    }

    #[test]
    fn the_kernels_verifier_accepts_the_program() {
        let r = rules(&[], &[], &|_| None).expect("rules");
        match load(&program(&r)) {
            Ok(_) => eprintln!("device program loaded by this kernel"),
            // Not root (or no BPF here): nothing to check.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn equal_rules_share_one_loaded_program() {
        // Programs stand in for loaded ones: their number is the load's.
        let mut loaded = Vec::new();
        let mut loads = 0;
        let mut get = |list: &mut Vec<_>, n: u8| {
            shared_in(list, vec![[n; 8]], |_| {
                loads += 1;
                Ok(loads)
            })
            .expect("a stand-in load never fails")
        };
        let first = get(&mut loaded, 0);
        let other = get(&mut loaded, 1);
        let again = get(&mut loaded, 0);
        assert!(Arc::ptr_eq(&first, &again), "equal rules, one program");
        assert!(!Arc::ptr_eq(&first, &other), "other rules, another");
        assert_eq!((*first, *other), (1, 2));
        // Rule set 0 was used last: LOADED_MAX - 1 new ones evict 1, not 0.
        for n in 2..=LOADED_MAX as u8 {
            get(&mut loaded, n);
        }
        assert_eq!(loaded.len(), LOADED_MAX);
        assert!(Arc::ptr_eq(&first, &get(&mut loaded, 0)), "0 was kept");
        let reloaded = get(&mut loaded, 1);
        assert!(
            !Arc::ptr_eq(&other, &reloaded),
            "1 was evicted, loaded again"
        );
        // A failed load leaves the list as it was.
        let before = loaded.len();
        let e = shared_in(&mut loaded, vec![[99; 8]], |_| -> std::io::Result<u32> {
            Err(std::io::Error::from_raw_os_error(libc::EPERM))
        });
        assert!(e.is_err());
        assert_eq!(loaded.len(), before);
    }

    #[test]
    fn a_change_attaches_before_it_detaches_and_only_what_differs() {
        // Fresh cgroup: attach ours, detach nothing.
        assert_eq!(plan(&[], &[7]), (vec![7], vec![]));
        // Other rules: attach the new, detach the old.
        assert_eq!(plan(&[5], &[7]), (vec![7], vec![5]));
        // The same rules again (a shared program already in force):
        // nothing to attach (a second attach is refused), nothing to detach.
        assert_eq!(plan(&[7], &[7]), (vec![], vec![]));
        // A change cut short left two: the extra one goes.
        assert_eq!(plan(&[5, 7], &[7]), (vec![], vec![5]));
        // An undo to two programs in force before.
        assert_eq!(plan(&[9], &[5, 7]), (vec![5, 7], vec![9]));
    }

    #[test]
    fn the_kernel_shares_and_identifies_programs() {
        use std::os::fd::AsFd;
        let none = rules(&[], &[], &|_| None).expect("rules");
        let first = match shared(program(&none)) {
            Ok(p) => p,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no BPF here (not root): {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let again = shared(program(&none)).expect("the same program");
        assert!(Arc::ptr_eq(&first, &again));
        let id = prog_id(first.as_fd()).expect("its id");
        assert_ne!(id, 0);
        let mut tty = none.clone();
        tty.push(Rule {
            kind: 'c',
            major: Some(4),
            minor: Some(1),
            read: true,
            write: true,
        });
        let other = shared(program(&tty)).expect("another program");
        assert_ne!(prog_id(other.as_fd()).expect("its id"), id);
    }

    /// A scratch cgroup2 directory, when this machine has one we may write.
    fn scratch_cgroup() -> Option<tempfile::TempDir> {
        const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
        ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .filter(|d| rustix::fs::statfs(*d).is_ok_and(|s| s.f_type == CGROUP2_SUPER_MAGIC))
            .find_map(|d| {
                tempfile::Builder::new()
                    .prefix("vz-devices-")
                    .tempdir_in(d)
                    .ok()
            })
    }

    #[test]
    fn changes_and_undos_on_a_real_cgroup() {
        use std::os::fd::AsFd;
        let Some(cg) = scratch_cgroup() else {
            eprintln!("skipped: no writable cgroup2 tree here");
            return;
        };
        let none = rules(&[], &[], &|_| None).expect("rules");
        if let Err(e) = shared(program(&none)) {
            eprintln!("skipped: no BPF here: {e}");
            return;
        }
        let path = cg.path().to_owned();
        let ids = || {
            let dir = open_cgroup(&path).expect("the scratch cgroup");
            attached(dir.as_fd()).expect("its programs")
        };
        let id_of = |r: &[Rule]| {
            let prog = shared(program(r)).expect("loaded before");
            prog_id(prog.as_fd()).expect("its id")
        };
        let tty = DevRule {
            kind: 'c',
            major: 4,
            minor: Some(1),
            access: Access {
                read: true,
                write: true,
                quota: false,
            },
        };
        let with_tty = rules(&[], std::slice::from_ref(&tty), &|_| None).expect("rules");
        apply(&path, &[], &[]).expect("first program");
        assert_eq!(ids(), vec![id_of(&none)]);
        // The same rules again keep the program (no second attach).
        apply(&path, &[], &[]).expect("same rules");
        assert_eq!(ids(), vec![id_of(&none)]);
        // A change, then its undo: exactly the first program again.
        let before = InForce::of(&path).expect("in force");
        apply(&path, &[], std::slice::from_ref(&tty)).expect("second program");
        assert_eq!(ids(), vec![id_of(&with_tty)]);
        before.restore().expect("undo");
        assert_eq!(ids(), vec![id_of(&none)]);
        // Detach before the directory goes (rmdir would do it too).
        InForce {
            cg: path.clone(),
            progs: Vec::new(),
        }
        .restore()
        .expect("detach all");
        assert!(ids().is_empty());
    }

    #[test]
    fn a_missing_node_is_a_clear_error() {
        let fuse = DevNode {
            path: "fuse".into(),
            access: Access {
                read: true,
                write: true,
                quota: false,
            },
        };
        let e = rules(&[fuse], &[], &|_| None).expect_err("no node");
        assert!(e.contains("/dev/fuse is not a device node"), "{e}");
    }
}
