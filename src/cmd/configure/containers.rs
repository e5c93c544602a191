//! `configure containers`: a `registries.conf.d` drop-in making podman,
//! skopeo and buildah ask the helper first, then their own auth files, so
//! hosts the daemon does not serve fall through to `containers-auth.json`.

use std::path::{Path, PathBuf};

use super::ConfigureError;

/// The drop-in's file name: late enough to follow the distribution's own.
pub(crate) const DROP_IN: &str = "50-ecr-credd.conf";

/// What the drop-in says.
pub(crate) const CONTENT: &str = "# Written by `ecr-credd configure containers` (`--remove` takes it out).\n\
# podman, skopeo and buildah ask docker-credential-ecr-credd first; a host it\n\
# does not serve answers \"not found\" and falls through to the auth files.\n\
credential-helpers = [\"ecr-credd\", \"containers-auth.json\"]\n";

/// The drop-in directory: the system's (root's tools and everyone's), or
/// the user's (`$XDG_CONFIG_HOME` or `~/.config`), which the tools read too.
pub(crate) fn drop_in_dir(system: bool, home: Option<&Path>) -> Result<PathBuf, ConfigureError> {
    if system {
        return Ok(PathBuf::from("/etc/containers/registries.conf.d"));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|_| home.is_none()) {
        Some(dir) => PathBuf::from(dir),
        None => home
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .ok_or(ConfigureError::NoHome)?
            .join(".config"),
    };
    Ok(config.join("containers/registries.conf.d"))
}

/// The new text of the drop-in at `path` whose text is `existing` (`None`
/// when unchanged, `Some(None)` to delete it), and what happened.
pub(crate) fn plan(
    path: &Path,
    existing: Option<&str>,
    remove: bool,
    force: bool,
) -> Result<(Option<Option<String>>, String), ConfigureError> {
    let ours = |t: &str| t.starts_with("# Written by `ecr-credd configure containers`");
    Ok(match (remove, existing) {
        (false, Some(t)) if t == CONTENT => (None, "already in place".into()),
        (false, Some(t)) if !ours(t) && !force => {
            return Err(ConfigureError::Conflict {
                path: path.into(),
                conflicts: vec!["the file exists with other content".into()],
            })
        }
        (false, _) => (
            Some(Some(CONTENT.to_owned())),
            "credential-helpers = [\"ecr-credd\", \"containers-auth.json\"]".into(),
        ),
        (true, Some(t)) if ours(t) || force => (Some(None), "removed".into()),
        (true, Some(_)) => {
            return Err(ConfigureError::Conflict {
                path: path.into(),
                conflicts: vec!["the file was not written by ecr-credd".into()],
            })
        }
        (true, None) => (None, "not configured".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_removes_only_its_own_file() {
        let p = Path::new("/etc/containers/registries.conf.d/50-ecr-credd.conf");
        let (write, _) = plan(p, None, false, false).unwrap();
        assert_eq!(write, Some(Some(CONTENT.to_owned())));
        assert_eq!(plan(p, Some(CONTENT), false, false).unwrap().0, None, "twice changes nothing");
        assert_eq!(plan(p, Some(CONTENT), true, false).unwrap().0, Some(None));
        assert_eq!(plan(p, None, true, false).unwrap().0, None);
        let theirs = "credential-helpers = [\"secretservice\"]\n";
        assert!(plan(p, Some(theirs), false, false).unwrap_err().to_string().contains("--force replaces it"));
        assert!(plan(p, Some(theirs), true, false).is_err());
        assert_eq!(plan(p, Some(theirs), false, true).unwrap().0, Some(Some(CONTENT.to_owned())));
    }
}
