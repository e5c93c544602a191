//! Where the base credentials come from (`[aws] credentials`): the instance
//! profile by default, or any of aws-config's own providers, for pods (IRSA,
//! EKS Pod Identity), ECS tasks, on-prem nodes (Roles Anywhere through a
//! profile's `credential_process`), SSO laptops and CI runners.

use std::fmt;

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use super::sdk_error::error_chain;

/// The kind of a base-credential provider. Only credentials from IMDS let
/// the chain ask IMDS for the region too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProviderKind {
    /// The instance profile.
    Imds,
    /// `AWS_ACCESS_KEY_ID` and friends.
    Environment,
    /// A profile of the shared config files.
    Profile,
    /// A web identity token file (IRSA).
    WebIdentity,
    /// The container credentials endpoint.
    Container,
}

/// One provider to ask, with the name it is logged and shown under.
#[derive(Clone, Debug)]
pub(crate) struct Provider {
    /// What it is.
    pub(crate) kind: ProviderKind,
    /// How it is shown: `instance profile (IMDS)`, `profile ci`, ...
    pub(crate) name: String,
    /// The SDK's provider.
    pub(crate) provider: SharedCredentialsProvider,
}

/// The provider that gave credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    /// What it is.
    pub(crate) kind: ProviderKind,
    /// How it is shown.
    pub(crate) name: String,
}

/// What [`first_credentials`] found: the credentials and who gave them, or
/// why none did; and what each provider passed over lacked.
pub(crate) type Found = (Result<(Answered, Credentials), String>, Vec<String>);

/// The accepted values, for messages.
pub(crate) const CHOICES: &str = "instance, chain, env, profile:NAME, web-identity or container";

/// One configured source of base credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// IMDSv2 only: the instance profile (the default; no surprise keys).
    #[default]
    Instance,
    /// The SDK's order: environment, profile files, web identity, container, IMDS.
    Chain,
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`).
    Env,
    /// A named profile of the shared config files (keys, SSO, `credential_process`).
    Profile(String),
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (IRSA).
    WebIdentity,
    /// The container credentials endpoint (ECS, EKS Pod Identity).
    Container,
}

impl CredentialSource {
    /// Parses a `credentials` value; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "instance" => CredentialSource::Instance,
            "chain" => CredentialSource::Chain,
            "env" => CredentialSource::Env,
            "web-identity" => CredentialSource::WebIdentity,
            "container" => CredentialSource::Container,
            _ => match text.strip_prefix("profile:") {
                Some("") => return Err("\"profile:\" needs a profile name, e.g. \"profile:ci\"".into()),
                Some(name) => CredentialSource::Profile(name.to_owned()),
                None => return Err(format!("{text:?} is not a credential source; use {CHOICES}")),
            },
        })
    }

    /// What a person should check before start: a missing token file or
    /// profile, said with the fix. `env` is what the daemon will see.
    pub fn precheck(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        match self {
            CredentialSource::WebIdentity => {
                let file = env("AWS_WEB_IDENTITY_TOKEN_FILE").ok_or(
                    "web-identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set (IRSA sets it in the pod; set it in the service's environment)",
                )?;
                std::fs::read(&file)
                    .map_err(|e| format!("web-identity: cannot read the token file {file}: {e}"))?;
                env("AWS_ROLE_ARN").ok_or("web-identity: AWS_ROLE_ARN is not set")?;
                Ok(())
            }
            CredentialSource::Profile(name) => {
                if profile_exists(name, env) {
                    Ok(())
                } else {
                    Err(format!(
                        "profile {name:?} is in neither {} nor {}; add it there or set AWS_CONFIG_FILE",
                        config_file(env, "AWS_CONFIG_FILE", "config"),
                        config_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// The providers to try in order, each with the name logged and shown.
    /// `imds` gets a client that never uses the proxy; `other` the proxy's.
    pub(crate) fn providers(&self, imds: &ProviderConfig, other: &ProviderConfig) -> Vec<Provider> {
        let instance = || {
            let p = ImdsCredentialsProvider::builder().configure(imds).build();
            Provider::new(ProviderKind::Imds, "instance profile (IMDS)", p)
        };
        let env = || {
            Provider::new(
                ProviderKind::Environment,
                "environment",
                EnvironmentVariableCredentialsProvider::new(),
            )
        };
        let web = || {
            let p = WebIdentityTokenCredentialsProvider::builder().configure(other).build();
            Provider::new(ProviderKind::WebIdentity, "web identity", p)
        };
        let container = || {
            let p = EcsCredentialsProvider::builder().configure(other).build();
            Provider::new(ProviderKind::Container, "container endpoint", p)
        };
        let profile = |name: Option<&str>| {
            let mut b = ProfileFileCredentialsProvider::builder().configure(other);
            if let Some(n) = name {
                b = b.profile_name(n);
            }
            let shown = format!("profile {}", name.unwrap_or("(AWS_PROFILE or default)"));
            Provider::new(ProviderKind::Profile, &shown, b.build())
        };
        match self {
            CredentialSource::Instance => vec![instance()],
            CredentialSource::Env => vec![env()],
            CredentialSource::Profile(name) => vec![profile(Some(name))],
            CredentialSource::WebIdentity => vec![web()],
            CredentialSource::Container => vec![container()],
            CredentialSource::Chain => vec![env(), profile(None), web(), container(), instance()],
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Instance => f.write_str("instance"),
            CredentialSource::Chain => f.write_str("chain"),
            CredentialSource::Env => f.write_str("env"),
            CredentialSource::Profile(n) => write!(f, "profile:{n}"),
            CredentialSource::WebIdentity => f.write_str("web-identity"),
            CredentialSource::Container => f.write_str("container"),
        }
    }
}

impl Provider {
    /// `provider` of `kind`, shown as `name`.
    pub(crate) fn new(kind: ProviderKind, name: &str, provider: impl ProvideCredentials + 'static) -> Self {
        Provider { kind, name: name.to_owned(), provider: SharedCredentialsProvider::new(provider) }
    }
}

/// Credentials from the first provider that has some, its name, and what
/// each earlier one lacked. A provider that has credentials but fails (a
/// denied web identity, a broken `credential_process`) stops the search, as
/// in the SDK's own chain: falling through would hide the real problem.
pub(crate) async fn first_credentials(providers: &[Provider]) -> Found {
    first_credentials_reporting(providers, &std::sync::Mutex::new(String::new())).await
}

/// [`first_credentials`], writing the name of the provider being asked into
/// `asking`, so a caller that stops waiting can say which one hung.
pub(crate) async fn first_credentials_reporting(
    providers: &[Provider],
    asking: &std::sync::Mutex<String>,
) -> Found {
    let mut lacked = Vec::new();
    for Provider { kind, name, provider } in providers {
        name.clone_into(&mut crate::sync::lock(asking));
        match provider.provide_credentials().await {
            Ok(c) => return (Ok((Answered { kind: *kind, name: name.clone() }, c)), lacked),
            Err(e @ CredentialsError::CredentialsNotLoaded(_)) if providers.len() > 1 => {
                lacked.push(format!("{name}: {}", error_chain(&e)));
            }
            Err(e) => return (Err(format!("{name}: {}", without_stderr(&error_chain(&e)))), lacked),
        }
    }
    (Err(format!("no source had credentials ({})", lacked.join("; "))), lacked)
}

/// aws-config puts a failed `credential_process`'s whole stderr into its
/// error. A helper may print anything there, secrets included, and the
/// error reaches the log, `/status` and every client, so only the exit
/// status is kept.
fn without_stderr(reason: &str) -> String {
    match reason.find(". Stderr:") {
        Some(at) => format!(
            "{} (its stderr is not shown, as it may hold secrets: run the command by hand to see it)",
            &reason[..at]
        ),
        None => reason.to_owned(),
    }
}

fn config_file(env: &dyn Fn(&str) -> Option<String>, var: &str, name: &str) -> String {
    env(var).unwrap_or_else(|| format!("{}/.aws/{name}", env("HOME").unwrap_or_else(|| "~".into())))
}

/// Whether `[profile NAME]` (config) or `[NAME]` (credentials) is defined.
fn profile_exists(name: &str, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let sections = |path: String, prefix: &str| {
        std::fs::read_to_string(path).unwrap_or_default().lines().any(|l| {
            let l = l.trim();
            l.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(str::trim).is_some_and(|s| {
                s.strip_prefix(prefix).map(str::trim) == Some(name) || (name == "default" && s == "default")
            })
        })
    };
    sections(config_file(env, "AWS_CONFIG_FILE", "config"), "profile ")
        || sections(config_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_and_says_what_is_accepted() {
        for (text, want) in [
            ("instance", CredentialSource::Instance),
            ("chain", CredentialSource::Chain),
            ("env", CredentialSource::Env),
            ("profile:ci", CredentialSource::Profile("ci".into())),
            ("web-identity", CredentialSource::WebIdentity),
            ("container", CredentialSource::Container),
        ] {
            assert_eq!(CredentialSource::parse(text).as_ref(), Ok(&want));
            assert_eq!(want.to_string(), text);
        }
        assert!(CredentialSource::parse("profile:").unwrap_err().contains("needs a profile name"));
        let err = CredentialSource::parse("imds").unwrap_err();
        assert!(err.contains("\"imds\" is not a credential source; use instance, chain"), "{err}");
    }

    #[test]
    fn a_failed_processes_stderr_is_dropped() {
        let said = "Error retrieving credentials: external process exited with code exit status: 1. Stderr: SEKRIT\nmore";
        let kept = without_stderr(said);
        assert!(!kept.contains("SEKRIT") && kept.contains("exited with code exit status: 1"), "{kept}");
        assert_eq!(without_stderr("profile x: no answer"), "profile x: no answer");
    }

    #[test]
    fn prechecks_name_the_missing_piece() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile ci]\nregion = eu-west-1\n[default]\n").unwrap();
        let vars = [
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(CredentialSource::Profile("ci".into()).precheck(&env), Ok(()));
        let err = CredentialSource::Profile("prod".into()).precheck(&env).unwrap_err();
        assert!(err.contains("profile \"prod\" is in neither") && err.contains("/config"), "{err}");
        let err = CredentialSource::WebIdentity.precheck(&env).unwrap_err();
        assert!(err.contains("AWS_WEB_IDENTITY_TOKEN_FILE is not set"), "{err}");
        let vars = [("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token".to_owned())];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let err = CredentialSource::WebIdentity.precheck(&env).unwrap_err();
        assert!(err.contains("cannot read the token file /nonexistent/token"), "{err}");
    }
}
