//! A reproducible `newc` cpio writer for the initramfs.
//!
//! Entries are written in the order given (callers sort them), with fixed
//! owner, inode numbers counted from 1, and one timestamp for everything.

use std::io::Write;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// A cpio archive being assembled.
#[derive(Debug)]
pub struct Archive<W: Write> {
    out: W,
    ino: u32,
    mtime: u32,
    written: u64,
}

impl<W: Write> Archive<W> {
    pub fn new(out: W, mtime: u32) -> Self {
        Archive {
            out,
            ino: 0,
            mtime,
            written: 0,
        }
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        size: usize,
        rdev: (u32, u32),
    ) -> std::io::Result<()> {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut h = String::from("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// Adds one entry; `path` is relative (no leading `/`).
    pub fn add(&mut self, path: &str, node: &Node) -> std::io::Result<()> {
        let path = path.trim_start_matches('/');
        match node {
            Node::Dir => self.header(path, 0o040755, 0, (0, 0)),
            Node::File { data, executable } => {
                let mode = if *executable { 0o100755 } else { 0o100644 };
                self.header(path, mode, data.len(), (0, 0))?;
                self.put(data)?;
                self.pad()
            }
            Node::Symlink(target) => {
                self.header(path, 0o120777, target.len(), (0, 0))?;
                self.put(target.as_bytes())?;
                self.pad()
            }
            Node::CharDev { major, minor } => self.header(path, 0o020600, 0, (*major, *minor)),
        }
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.ino = 0;
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        // Pad the archive to 512 bytes like cpio(1) does.
        let n = (512 - (self.written % 512) as usize) % 512;
        self.put(&vec![0u8; n])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_terminated() {
        let mut a = Archive::new(Vec::new(), 1_700_000_000);
        a.add("dev", &Node::Dir).expect("dir");
        a.add("dev/console", &Node::CharDev { major: 5, minor: 1 })
            .expect("dev");
        a.add(
            "init",
            &Node::File {
                data: b"hello".to_vec(),
                executable: true,
            },
        )
        .expect("file");
        a.add("bin/sh", &Node::Symlink("busybox".into()))
            .expect("link");
        let out = a.finish().expect("finish");
        assert_eq!(out.len() % 512, 0);
        assert!(out.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        // The file header: mode 100755, size 5, name "init" (namesize 5).
        let at = text.find("init\0").expect("name");
        let header = &text[at - 110..at];
        assert_eq!(&header[14..22], "000081ED");
        assert_eq!(&header[54..62], "00000005");
        assert_eq!(&header[94..102], "00000005");
        // The char device carries its rdev.
        let at = text.find("dev/console\0").expect("name");
        let header = &text[at - 110..at];
        assert_eq!(&header[78..86], "00000005");
        assert_eq!(&header[86..94], "00000001");
    }

    #[test]
    fn same_input_same_bytes() {
        let build = || {
            let mut a = Archive::new(Vec::new(), 7);
            a.add("a", &Node::Dir).expect("dir");
            a.add(
                "a/b",
                &Node::File {
                    data: vec![1, 2, 3],
                    executable: false,
                },
            )
            .expect("file");
            a.finish().expect("finish")
        };
        assert_eq!(build(), build());
    }
}
