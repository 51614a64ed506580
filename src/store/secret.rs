//! The installation's secret key for event ids (`[envelope] id_key_file`,
//! default `STATE/id.key`): 32 random bytes as hex, mode 0600, made once
//! on first use and never replaced. Back it up with the state directory:
//! the ids of events not yet written depend on it (rotation: README).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;

use crate::domain::envelope::IdKey;
use crate::fsutil;

/// Reads the key at `path`, making it first if there is none.
pub fn id_key(path: &Path) -> anyhow::Result<IdKey> {
    use std::os::unix::fs::PermissionsExt;
    match fs::read_to_string(path) {
        Ok(text) => {
            if fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                tracing::warn!(file = %path.display(),
                    "id key readable by others than its owner: chmod 600 it");
            }
            parse(&text).with_context(|| {
                format!(
                    "{}: not an id key (64 hex digits); restore it from the backup of the state",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create(path).with_context(|| format!("cannot create the id key {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the id key {}", path.display())),
    }
}

fn parse(text: &str) -> anyhow::Result<IdKey> {
    let hex = text.trim();
    anyhow::ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "wrong length or not hex"
    );
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(IdKey(key))
}

/// Writes a new key durably under a temp name, then links it into place,
/// which fails if another process made one meanwhile (its key wins).
fn create(path: &Path) -> anyhow::Result<IdKey> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fsutil::create_dir_all(dir)?;
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = fsutil::temp_path(path)?;
    let mut file = fsutil::create_private_replacing(&tmp)?;
    file.write_all(format!("{hex}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            fsutil::sync_dir(dir)?;
            tracing::info!(file = %path.display(), "made a new id key for this installation");
            Ok(IdKey(key))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => id_key(path),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/id.key");
        let a = id_key(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(id_key(&path).unwrap(), a, "the same key on every run");
        let b = id_key(&dir.path().join("other.key")).unwrap();
        assert_ne!(a, b, "random per installation");
        fs::write(&path, "short").unwrap();
        let e = format!("{:#}", id_key(&path).unwrap_err());
        assert!(e.contains("not an id key"), "{e}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "short",
            "never replaced"
        );
    }
}
