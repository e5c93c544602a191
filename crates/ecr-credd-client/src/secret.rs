//! A string that must never be printed: ECR passwords and AWS secrets.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Makes this process non-dumpable: no core file (so no token or key on
/// disk after a crash or a watchdog SIGABRT) and no ptrace by other users.
/// Returns the error for the caller to report; the process still works.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(std::io::Error::from)
}

/// A secret string: `Debug` redacts it, its memory is zeroed on drop, and it
/// is read only through [`Secret::expose`].
///
/// ```
/// use ecr_credd_client::secret::Secret;
///
/// let token = Secret::from("eyJwYXlsb2FkIjoi");
/// // Logs and error messages that format it with `{:?}` show no part of it.
/// assert_eq!(format!("{token:?}"), "Secret(REDACTED)");
/// assert!(!format!("{:?}", Some(&token)).contains("eyJ"));
/// // Reading it is explicit, so every place it leaves is a call to `expose`.
/// assert_eq!(token.expose(), "eyJwYXlsb2FkIjoi");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The secret itself; every call site is a place the secret can leave.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Length in bytes, which is safe to show.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value.to_owned())
    }
}

// Serialisation exposes the secret on purpose: the socket reply and the
// helper's stdout are the only places a secret is meant to go.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::from("hunter2-password");
        assert_eq!(format!("{s:?}"), "Secret(REDACTED)");
        assert!(!format!("{:#?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-password");
    }
}
