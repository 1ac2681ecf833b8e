//! The files a start-up reads and writes.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use redis_ha_common::Secret;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path} (is the directory writable by this user?): {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the password file {0}: {1}")]
    Secret(PathBuf, String),
}

/// The file's text; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The file's text; it must exist.
pub fn read(path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The password in `path` (one line), or `None` when there is no file there (no AUTH).
pub fn read_password(path: &Path) -> Result<Option<Secret>, FileError> {
    if !path.exists() {
        return Ok(None);
    }
    let secret = Secret::from_file("secret file", path)
        .map_err(|e| FileError::Secret(path.to_owned(), e.to_string()))?;
    if secret.expose().contains(['\n', '\r']) {
        return Err(FileError::Secret(
            path.to_owned(),
            "it holds more than one line".into(),
        ));
    }
    Ok(Some(secret))
}

/// The secret in `path` (one line); a missing file is an error naming it: a node never starts
/// without its passwords.
pub fn read_secret(path: &Path) -> Result<Secret, FileError> {
    if !path.exists() {
        return Err(FileError::Secret(
            path.to_owned(),
            "missing (refusing to start without it)".into(),
        ));
    }
    read_password(path)?.ok_or_else(|| FileError::Secret(path.to_owned(), "missing".into()))
}

/// Writes `text` to `path` atomically (a mode-600 temporary file in the same directory, synced,
/// then renamed over `path`), so a crash never leaves half a config and no other user can read
/// the password in it.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), FileError> {
    let err = |source| FileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_is_mode_600_and_replaces() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("redis.conf");
        fs::write(&p, "old").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_atomic(&p, "new\n").expect("writes");
        assert_eq!(fs::read_to_string(&p).expect("reads"), "new\n");
        let mode = fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(d.path()).expect("ls").count(),
            1,
            "no temporary file left"
        );
        let e = write_atomic(&d.path().join("no/such/dir/x"), "x").expect_err("no dir");
        assert!(e.to_string().contains("no/such/dir/x"), "{e}");
    }

    #[test]
    fn password_file_rules() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("pw");
        assert!(read_password(&p).expect("no file: no AUTH").is_none());
        fs::write(&p, "pw\n").expect("write");
        assert_eq!(
            read_password(&p).expect("reads").expect("some").expose(),
            "pw"
        );
        fs::write(&p, "a\nb\n").expect("write");
        assert!(read_password(&p).is_err());
        fs::write(&p, "\n").expect("write");
        assert!(read_password(&p).is_err());
        let e = read_secret(&d.path().join("redis_app_password")).expect_err("missing");
        assert!(e.to_string().contains("redis_app_password"), "{e}");
        fs::write(&p, "x\n").expect("write");
        assert_eq!(read_secret(&p).expect("reads").expose(), "x");
    }
}
