//! Whose file it is and how it is replaced: a user's home from
//! `/etc/passwd`, and an atomic write that keeps the file's mode and owner.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ConfigureError;

/// A local user, as `/etc/passwd` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// Their uid.
    pub uid: u32,
    /// Their primary gid.
    pub gid: u32,
    /// Their home directory.
    pub home: PathBuf,
}

/// `name`'s entry in the `passwd` text.
pub(crate) fn find_user(passwd: &str, name: &str) -> Option<User> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[0] == name).then_some(())?;
        Some(User { uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: PathBuf::from(f[5]) })
    })
}

/// `name` from `/etc/passwd`.
pub(crate) fn user(name: &str) -> Result<User, ConfigureError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    find_user(&passwd, name).ok_or_else(|| ConfigureError::NoUser { name: name.into() })
}

/// The file's text, or `None` when there is none.
pub(crate) fn read(path: &Path) -> Result<Option<String>, ConfigureError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigureError::Io { path: path.into(), source: e }),
    }
}

/// Replaces `path` with `text` in one rename: a reader sees the old file or
/// the new, never half of one. An existing file keeps its mode and owner (a
/// symlink's target is what is replaced); a new one gets `mode`, in a new
/// directory of 0700, both owned by `owner` when given.
pub(crate) fn write_atomic(
    path: &Path,
    text: &str,
    mode: u32,
    owner: Option<&User>,
) -> Result<(), ConfigureError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigureError::Io { path, source }
    };
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        if let Some(u) = owner {
            std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid)).map_err(io(dir))?;
        }
    }
    let (mode, uid_gid) = match fs::metadata(&path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(_) => (mode, owner.map(|u| (u.uid, u.gid))),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.ecr-credd-{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = uid_gid {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(ConfigureError::Io { path, source: e });
    }
    // The rename itself is durable once the directory is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nci:x:1001:1002:CI,,,:/home/ci:/bin/sh\nbad:x:no:1:x:/h:/bin/sh\n";
        assert_eq!(find_user(passwd, "ci"), Some(User { uid: 1001, gid: 1002, home: "/home/ci".into() }));
        assert_eq!(find_user(passwd, "c"), None);
        assert_eq!(find_user(passwd, "bad"), None);
    }

    #[test]
    fn a_write_keeps_the_files_mode_and_replaces_in_one_rename() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, "{\"a\":1}\n", 0o600, None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        // New: its mode, in a new 0700 directory; nothing else left behind.
        let new = tmp.path().join("d/.docker/config.json");
        write_atomic(&new, "{}\n", 0o600, None).unwrap();
        assert_eq!(fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(new.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        // Through a symlink, the target is replaced and the link stays.
        let link = tmp.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        write_atomic(&link, "{\"b\":2}\n", 0o600, None).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\":2}\n");
    }

    #[test]
    fn a_new_file_for_another_user_is_theirs_and_an_existing_one_keeps_its_owner() {
        let tmp = tempfile::tempdir().unwrap();
        if fs::metadata(tmp.path()).unwrap().uid() != 0 {
            // Only root may give a file away; CI runs as root.
            eprintln!("skipped: not root");
            return;
        }
        let nobody = User { uid: 65534, gid: 65534, home: tmp.path().into() };
        let path = tmp.path().join(".docker/config.json");
        write_atomic(&path, "{}\n", 0o600, Some(&nobody)).unwrap();
        for p in [&path, &tmp.path().join(".docker")] {
            let m = fs::metadata(p).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
        }
        // Rewritten by root later, it stays nobody's.
        write_atomic(&path, "{\"a\":1}\n", 0o600, None).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().uid(), 65534);
    }
}
