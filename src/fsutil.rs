//! Private, durable file writes: temp file, fsync, rename, fsync of the
//! directory.
//!
//! Everything the job writes holds CPR numbers or secrets, so every file it
//! creates is mode 0600 and every directory 0700, whatever the umask: files
//! are opened with `O_CREAT | O_EXCL | O_NOFOLLOW` (a symlink planted at a
//! predictable temp name is never followed) and then `fchmod`ed. Any error
//! here is fatal for the caller's run: an fsync is never retried.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file the job creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the job creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates a new file, mode 0600 whatever the umask, for writing. Fails if
/// anything (a file, a symlink) is already at `path`.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Like [`create_private`], but first removes whatever is at `path` (a
/// temp file a crashed process left, or a planted symlink: the link itself
/// is removed, never its target).
pub fn create_private_replacing(path: &Path) -> io::Result<File> {
    match create_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            create_private(path)
        }
        other => other,
    }
}

/// Opens (or creates, mode 0600) a file for appending, never through a symlink.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// The temp name `write_atomic` and the outbox use beside `path`:
/// `.<name>.tmp.<pid>` (the stale-file sweep knows the pattern).
pub fn temp_path(path: &Path) -> io::Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok(parent(path).join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// The pid of the process writing temp file `path` (a name made by
/// [`temp_path`]), or `None` if `path` is no temp file.
pub fn temp_writer(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    if !name.starts_with('.') {
        return None;
    }
    name.rsplit_once(".tmp.")?.1.parse().ok()
}

/// Writes `bytes` to `path` atomically and durably, mode 0600.
///
/// A reader sees either the old file or the complete new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut file = create_private_replacing(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        crate::crash::step("temp file written");
        fs::rename(&tmp, path)?;
        crate::crash::step("renamed");
        sync_dir(dir)?;
        crate::crash::step("directory synced");
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replaces `path` with `bytes` (mode 0600) through a temp file and a
/// rename, without fsync: for outputs meant for people (change files,
/// exported envelopes), never for state.
pub fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let result = create_private_replacing(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a directory and its parents, mode 0700 whatever the umask,
/// fsyncing the new entries' parents. Existing directories are left as
/// they are.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(p)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
            sync_dir(parent(dir))?;
            crate::crash::step("directory created");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file's modification time in Unix seconds.
pub fn mtime(path: &Path) -> io::Result<i64> {
    let modified = fs::metadata(path).and_then(|m| m.modified()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot read the modification time of {}: {e}",
                path.display()
            ),
        )
    })?;
    jiff::Timestamp::try_from(modified)
        .map(|t| t.as_second())
        .map_err(|e| io::Error::other(format!("{}: modification time: {e}", path.display())))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's creation mask.
        let old = unsafe { libc::umask(0o002) };
        let new_dir = dir.path().join("x/y");
        create_dir_all(&new_dir).unwrap();
        let file = new_dir.join("f");
        write_replace(&file, b"1").unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&dir.path().join("x")), 0o700);
        assert_eq!(mode(&new_dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&victim, temp_path(&path).unwrap()).unwrap();
        assert_eq!(
            create_private(&temp_path(&path).unwrap())
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // A symlink at the final name is replaced by the rename, not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"other").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn writes_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        create_dir_all(path.parent().unwrap()).unwrap();
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file is left behind");
    }
}
