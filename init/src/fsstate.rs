//! Was a filesystem cleanly unmounted last time? Read from its superblock
//! before it is mounted (mounting changes the answer).

use std::io::Read;
use std::path::Path;

/// What a superblock says about the last unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsState {
    Clean,
    /// Not cleanly unmounted: the journal will be replayed, or the FAT dirty bit
    /// is set.
    Unclean,
    /// The kernel recorded errors on this filesystem.
    Errors,
    /// Neither ext4 nor FAT32 was recognised.
    Unknown,
}

impl FsState {
    pub fn as_str(self) -> &'static str {
        match self {
            FsState::Clean => "clean",
            FsState::Unclean => "unclean",
            FsState::Errors => "errors",
            FsState::Unknown => "unknown",
        }
    }
}

const EXT4_MAGIC: u16 = 0xEF53;
const EXT4_VALID_FS: u16 = 0x1;
const EXT4_ERROR_FS: u16 = 0x2;
const EXT4_INCOMPAT_RECOVER: u32 = 0x4;
const FAT_STATE_DIRTY: u8 = 0x1;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Classifies the first 2 KiB of a block device.
pub fn classify(head: &[u8]) -> FsState {
    if head.len() >= 2048 {
        let sb = &head[1024..2048];
        if le16(sb, 0x38) == EXT4_MAGIC {
            let state = le16(sb, 0x3A);
            let incompat = le32(sb, 0x60);
            return if state & EXT4_ERROR_FS != 0 {
                FsState::Errors
            } else if incompat & EXT4_INCOMPAT_RECOVER != 0 || state & EXT4_VALID_FS == 0 {
                FsState::Unclean
            } else {
                FsState::Clean
            };
        }
    }
    if head.len() >= 512 && &head[0x52..0x5A] == b"FAT32   " && head[510..512] == [0x55, 0xAA] {
        return if head[0x41] & FAT_STATE_DIRTY != 0 {
            FsState::Unclean
        } else {
            FsState::Clean
        };
    }
    FsState::Unknown
}

/// Reads the superblock of `dev` and classifies it.
pub fn probe(dev: &Path) -> std::io::Result<FsState> {
    let mut head = vec![0u8; 2048];
    let mut f = std::fs::File::open(dev)?;
    f.read_exact(&mut head)?;
    Ok(classify(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4(state: u16, incompat: u32) -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        b[1024 + 0x3A..1024 + 0x3C].copy_from_slice(&state.to_le_bytes());
        b[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        b
    }

    fn fat32(state: u8) -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[0x52..0x5A].copy_from_slice(b"FAT32   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b[0x41] = state;
        b
    }

    #[test]
    fn ext4_states() {
        assert_eq!(classify(&ext4(1, 0x2c2)), FsState::Clean);
        assert_eq!(classify(&ext4(1, 0x2c2 | 0x4)), FsState::Unclean);
        assert_eq!(classify(&ext4(0, 0)), FsState::Unclean);
        assert_eq!(classify(&ext4(3, 0)), FsState::Errors);
    }

    #[test]
    fn fat32_dirty_bit() {
        assert_eq!(classify(&fat32(0)), FsState::Clean);
        assert_eq!(classify(&fat32(1)), FsState::Unclean);
    }

    #[test]
    fn unknown_and_short_input() {
        assert_eq!(classify(&[0u8; 2048]), FsState::Unknown);
        assert_eq!(classify(&[0u8; 10]), FsState::Unknown);
    }
}
