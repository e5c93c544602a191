//! `ecr-credd install-host`: what a DaemonSet's init container does (the
//! image has no shell): copy the two client binaries to a host directory and
//! make the socket directory that the non-root daemon will own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The programs that run on the host: the kubelet provider and the docker helper.
pub(super) const HOST_PROGRAMS: [&str; 2] = ["ecr-credd-kubelet-provider", "docker-credential-ecr-credd"];

/// Why the host could not be prepared.
#[derive(Debug, Error)]
pub(super) enum InstallError {
    /// A file step failed.
    #[error("{path}: cannot {action}: {cause}")]
    Io { path: PathBuf, action: &'static str, cause: std::io::Error },
    /// `--owner` is not two numbers.
    #[error("--owner {0:?} is not UID:GID (numbers, e.g. 64872:64872)")]
    Owner(String),
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |cause| InstallError::Io { path, action, cause }
}

/// Parses `UID:GID`.
pub(super) fn parse_owner(text: &str) -> Result<(u32, u32), InstallError> {
    let bad = || InstallError::Owner(text.to_owned());
    let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
    Ok((uid.parse().map_err(|_| bad())?, gid.parse().map_err(|_| bad())?))
}

/// Copies [`HOST_PROGRAMS`] from `from` into `bin_dir`, each written beside
/// its final name and renamed over it, so a kubelet exec'ing it mid-upgrade
/// runs the old or the new file, never half of one. Then makes `socket_dir`
/// (mode 0755, so only its owner can replace the socket) owned by `owner`.
/// Returns what it wrote.
pub(super) fn install_host(
    from: &Path,
    bin_dir: &Path,
    socket_dir: Option<&Path>,
    owner: Option<(u32, u32)>,
) -> Result<Vec<PathBuf>, InstallError> {
    std::fs::create_dir_all(bin_dir).map_err(io(bin_dir, "create the directory"))?;
    let mut written = Vec::new();
    for name in HOST_PROGRAMS {
        let (source, target) = (from.join(name), bin_dir.join(name));
        let partial = bin_dir.join(format!(".{name}.partial"));
        write_new(&source, &partial)?;
        std::fs::rename(&partial, &target).map_err(io(&target, "move into place"))?;
        written.push(target);
    }
    if let Some(dir) = socket_dir {
        std::fs::create_dir_all(dir).map_err(io(dir, "create the socket directory"))?;
        // Only what differs is changed: a directory already given to the
        // daemon's user needs no CAP_FOWNER to be left as it is.
        let meta = std::fs::metadata(dir).map_err(io(dir, "inspect the socket directory"))?;
        if meta.permissions().mode() & 0o7777 != 0o755 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io(dir, "set the socket directory's mode"))?;
        }
        if let Some((uid, gid)) = owner.filter(|&(u, g)| (meta.uid(), meta.gid()) != (u, g)) {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(io(dir, "set the socket directory's owner"))?;
        }
        written.push(dir.to_owned());
    }
    Ok(written)
}

/// Copies `source` to `partial` as a new file (mode 0755). Whatever sits at
/// `partial` is unlinked first, and the file is created with O_CREAT|O_EXCL,
/// which never follows a symlink: one planted there cannot redirect the
/// write to another file on the host.
fn write_new(source: &Path, partial: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(partial, "remove")(e)),
        _ => {}
    }
    let mut from = std::fs::File::open(source).map_err(io(source, "copy"))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(partial)
        .map_err(io(partial, "create"))?;
    std::io::copy(&mut from, &mut to).map_err(io(source, "copy"))?;
    // The mode asked for at creation is cut by the umask.
    to.set_permissions(std::fs::Permissions::from_mode(0o755)).map_err(io(partial, "make executable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_host_programs_and_makes_the_socket_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("image/usr/bin");
        std::fs::create_dir_all(&from).unwrap();
        for name in HOST_PROGRAMS {
            std::fs::write(from.join(name), name).unwrap();
        }
        let bin = tmp.path().join("host/bin");
        let run = tmp.path().join("host/run/ecr-credd");
        let me = std::fs::metadata(tmp.path()).unwrap();
        let written = install_host(&from, &bin, Some(&run), Some((me.uid(), me.gid()))).unwrap();
        assert_eq!(written.len(), 3);
        for name in HOST_PROGRAMS {
            let meta = std::fs::metadata(bin.join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o755);
            assert_eq!(std::fs::read_to_string(bin.join(name)).unwrap(), name);
        }
        assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o777, 0o755);
        // Again over the installed files (an upgrade): replaced, no partials left.
        std::fs::write(from.join(HOST_PROGRAMS[0]), "v2").unwrap();
        install_host(&from, &bin, None, None).unwrap();
        assert_eq!(std::fs::read_to_string(bin.join(HOST_PROGRAMS[0])).unwrap(), "v2");
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 2);

        // A symlink planted at the partial name does not redirect the write.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, bin.join(format!(".{}.partial", HOST_PROGRAMS[1]))).unwrap();
        install_host(&from, &bin, None, None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(bin.join(HOST_PROGRAMS[1])).unwrap(), HOST_PROGRAMS[1]);

        let err = install_host(&tmp.path().join("missing"), &bin, None, None).unwrap_err();
        assert!(err.to_string().contains("missing/ecr-credd-kubelet-provider: cannot copy"), "{err}");
        assert_eq!(parse_owner("64872:64872").unwrap(), (64872, 64872));
        assert!(parse_owner("ecr-credd").unwrap_err().to_string().contains("UID:GID"));
    }
}
