//! A private directory on a memory-backed filesystem (`$XDG_RUNTIME_DIR`, `/run/user/<uid>`):
//! gone at reboot, never written to a persistent disk. Or a directory the user named in the
//! config, which is their explicit choice.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::SlotStore;
use crate::atomic_file;
use crate::secret::Secret;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

pub struct RuntimeDir {
    dir: PathBuf,
    uid: u32,
}

/// Whether `path` is on tmpfs or ramfs.
pub fn memory_backed(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we pass and reads the NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    #[allow(clippy::unnecessary_cast)]
    let kind = stat.f_type as i64;
    rc == 0 && (kind == TMPFS_MAGIC || kind == RAMFS_MAGIC)
}

/// A directory only `uid` can use: created 0700, or existing, owned by `uid`, not a symlink,
/// and not open to group or others. Anything else may be someone else's trap.
pub fn private_dir(dir: &Path, uid: u32) -> Option<PathBuf> {
    // Many processes start cold together: losing the race to create it is fine.
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = fs::symlink_metadata(dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0;
    private.then(|| dir.to_path_buf())
}

impl RuntimeDir {
    pub fn open(dir: &Path, uid: u32) -> Option<RuntimeDir> {
        Some(RuntimeDir {
            dir: private_dir(dir, uid)?,
            uid,
        })
    }

    fn path(&self, slot: &str) -> PathBuf {
        self.dir.join(format!("{slot}.json"))
    }
}

impl SlotStore for RuntimeDir {
    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }

    fn read(&self, slot: &str) -> Option<Secret<Vec<u8>>> {
        let path = self.path(slot);
        let meta = fs::symlink_metadata(&path).ok()?;
        // A file someone else planted, or one others could read, is not ours to trust.
        if !meta.is_file() || meta.uid() != self.uid || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
        fs::read(&path).ok().map(Secret::new)
    }

    fn write(
        &self,
        slot: &str,
        bytes: &Secret<Vec<u8>>,
        _lifetime: Duration,
    ) -> anyhow::Result<()> {
        let path = self.path(slot);
        // A foreign or odd file in the way is replaced, never trusted or written through.
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if !meta.is_file() || meta.uid() != self.uid {
                fs::remove_file(&path)?;
            }
        }
        atomic_file::replace_private(&path, bytes.expose())
    }

    fn remove(&self, slot: &str) {
        let _ = fs::remove_file(self.path(slot));
    }

    fn clear(&self) -> anyhow::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Entries, and the temporary files of writes that were killed halfway.
            let ours = name.ends_with(".json") || name.contains(".json.tmp-");
            if ours && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
