//! Replacing a small file so that a reader, or a process killed at any instant, sees either
//! the old content or the new one, never a mix or a truncation; and so that two writers
//! cannot lose each other's change.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Holds an exclusive lock on `<file>.lock` for a read-modify-write of `<file>`.
pub struct EditLock {
    _file: File,
}

/// Takes the edit lock for `path`, creating its directory with `dir_mode` when missing:
/// 0700 where the files may hold something private (docker's config), 0755 where other
/// users must read it (a credentials file under /etc).
pub fn lock_for_edit(path: &Path, dir_mode: u32) -> anyhow::Result<EditLock> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(&dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let lock_path = sibling(path, ".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| not_writable(path, &lock_path))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    Ok(EditLock { _file: file })
}

/// Writes `content` to a temporary file beside `path` (same filesystem), flushes it to disk,
/// and renames it over `path`. The new file keeps the old one's mode, owner and group (so
/// root editing a user's file leaves it the user's), or gets `new_mode`. A symlink is
/// followed, so the file it points to is replaced and the link stays.
pub fn replace(path: &Path, content: &[u8], new_mode: u32) -> anyhow::Result<()> {
    write_replacing(path, content, Some(new_mode))
}

/// Like [`replace`], but the file is always 0600 whatever the old one was: for files that
/// hold a secret.
pub fn replace_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    write_replacing(path, content, None)
}

fn write_replacing(path: &Path, content: &[u8], new_mode: Option<u32>) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let target = resolve_symlink(path)?;
    let old = fs::metadata(&target).ok();
    let mode = match (&old, new_mode) {
        (Some(meta), Some(_)) => meta.permissions().mode() & 0o7777,
        (None, Some(mode)) => mode,
        (_, None) => 0o600,
    };
    let dir = parent_dir(&target);
    let temp = sibling(
        &target,
        &format!(".tmp-{}-{}", std::process::id(), unique_suffix()),
    );
    let result = (|| -> anyhow::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .with_context(|| not_writable(&target, &temp))?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(meta) = &old {
            // Only root may give a file away; for anyone else the owner is already right.
            let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
        }
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", target.display()))
}

fn resolve_symlink(path: &Path) -> anyhow::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)
            .with_context(|| format!("{} is a symlink to a missing file", path.display())),
        Ok(meta) if !meta.is_file() => bail!("{} is not a regular file", path.display()),
        _ => Ok(path.to_path_buf()),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    let name = format!(".{}", name.to_string_lossy());
    parent_dir(path).join(name)
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn not_writable(target: &Path, tried: &Path) -> String {
    format!(
        "cannot write beside {} ({}); it is not ours to rewrite: run as its owner, or set SLOTHBOX_CONFIG to a file of your own",
        target.display(),
        tried.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        replace(&path, b"{}", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"{\"a\":1}", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn private_files_are_always_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.json");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&path, b"new").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_symlink_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, "{}").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace(&link, b"[1]", 0o600).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"[1]");
    }

    #[test]
    fn lock_creates_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/credentials.json");
        let _lock = lock_for_edit(&path, 0o700).unwrap();
        let mode = fs::metadata(dir.path().join("nested"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
