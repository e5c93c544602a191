//! Outbound HTTPS proxy for STS and ECR, and the HTTP clients that follow it.
//!
//! We build every client ourselves rather than take the SDK default, whose
//! proxy handling depends on the behavior version (newer ones read
//! `HTTP_PROXY`, which would send IMDS calls to the proxy and break them).
//! Here only `[aws] https_proxy` or `HTTPS_PROXY` count, only HTTPS goes
//! through the proxy, and IMDS gets a client with no proxy at all.

use aws_config::provider_config::ProviderConfig;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Connector};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::config::Config;

/// A proxy URL the HTTP client cannot use.
#[derive(Debug, thiserror::Error)]
#[error("proxy {url}: {reason}")]
pub(crate) struct ProxyError {
    /// The URL with credentials hidden.
    pub url: String,
    /// Why it is unusable.
    pub reason: String,
}

/// IMDS must be reached directly even if `NO_PROXY` forgets it.
const ALWAYS_DIRECT: &str = "169.254.169.254,fd00:ec2::254";

/// Where HTTPS requests to AWS go, resolved from the config, then the environment.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    url: String,
    no_proxy: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("url", &self.display_url()).field("no_proxy", &self.no_proxy).finish()
    }
}

impl Proxy {
    /// The proxy from `[aws] https_proxy`, else `HTTPS_PROXY`/`https_proxy`; `None` for direct.
    pub(crate) fn resolve(config: &Config) -> Option<Proxy> {
        Self::from_parts(config.https_proxy.clone(), config.no_proxy.clone(), |name| std::env::var(name).ok())
    }

    /// Resolution with the environment passed in, so it can be tested.
    pub(crate) fn from_parts(
        url: Option<String>,
        no_proxy: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Proxy> {
        let first = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()));
        let url = url.or_else(|| first(&["HTTPS_PROXY", "https_proxy"]))?.trim().to_owned();
        let listed = no_proxy.or_else(|| first(&["NO_PROXY", "no_proxy"])).unwrap_or_default();
        let no_proxy = if listed.trim().is_empty() {
            ALWAYS_DIRECT.to_owned()
        } else {
            format!("{},{ALWAYS_DIRECT}", listed.trim().trim_end_matches(','))
        };
        Some(Proxy { url, no_proxy })
    }

    /// The proxy URL with any `user:password@` hidden, for logs and status.
    pub(crate) fn display_url(&self) -> String {
        redact_userinfo(&self.url)
    }

    /// The bypass list, including the IMDS addresses.
    pub(crate) fn no_proxy(&self) -> &str {
        &self.no_proxy
    }

    /// The SDK's proxy settings: HTTPS only, so plain-HTTP endpoints stay direct.
    pub(crate) fn proxy_config(&self) -> Result<ProxyConfig, ProxyError> {
        ProxyConfig::https(self.url.as_str())
            .map(|p| p.no_proxy(&self.no_proxy))
            .map_err(|e| ProxyError { url: self.display_url(), reason: e.to_string() })
    }
}

/// `url` with any `user:password@` replaced by `***@`, with or without a
/// scheme (curl accepts `user:pw@proxy:3128`). Everything up to the last `@`
/// goes: a password that is not URL-encoded may hold `/`, `?` or `#`, and a
/// proxy URL has no path to keep.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The rustls client for AWS APIs: through `proxy`, or direct when `None`.
pub(crate) fn http_client(proxy: Option<&Proxy>) -> Result<SharedHttpClient, ProxyError> {
    Ok(client_with(match proxy {
        Some(p) => p.proxy_config()?,
        None => ProxyConfig::disabled(),
    }))
}

fn client_with(proxy: ProxyConfig) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(proxy.clone())
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .build()
    })
}

/// Provider settings for IMDS: the standard environment, never a proxy.
pub(crate) fn imds_provider_config() -> ProviderConfig {
    ProviderConfig::default().with_http_client(client_with(ProxyConfig::disabled()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn config_wins_over_the_environment() {
        let vars = [("HTTPS_PROXY", "http://env:3128"), ("NO_PROXY", ".internal")];
        let p = Proxy::from_parts(Some("http://conf:8080".into()), None, env(&vars)).unwrap();
        assert_eq!(p.url, "http://conf:8080");
        assert_eq!(p.no_proxy(), ".internal,169.254.169.254,fd00:ec2::254");
        let p = Proxy::from_parts(None, Some("a.example,".into()), env(&vars)).unwrap();
        assert_eq!(p.url, "http://env:3128");
        assert_eq!(p.no_proxy(), "a.example,169.254.169.254,fd00:ec2::254");
    }

    #[test]
    fn lower_case_and_empty_variables() {
        let p = Proxy::from_parts(None, None, env(&[("https_proxy", "http://lower:1")])).unwrap();
        assert_eq!((p.url.as_str(), p.no_proxy()), ("http://lower:1", ALWAYS_DIRECT));
        assert_eq!(Proxy::from_parts(None, None, env(&[("HTTPS_PROXY", " ")])), None);
        // HTTP_PROXY is for plain HTTP; AWS APIs are HTTPS, IMDS is plain HTTP.
        assert_eq!(Proxy::from_parts(None, None, env(&[("HTTP_PROXY", "http://h:1")])), None);
    }

    #[test]
    fn credentials_in_the_url_are_never_shown() {
        let p = Proxy::from_parts(Some("http://user:hunter2@proxy:3128".into()), None, env(&[])).unwrap();
        assert_eq!(p.display_url(), "http://***@proxy:3128");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(p.proxy_config().is_ok());
        for (url, shown) in [
            ("user:hunter2@proxy:3128", "***@proxy:3128"),
            ("http://user:hun/ter2@proxy:3128", "http://***@proxy:3128"),
            ("http://user:hun ter2@proxy:3128/", "http://***@proxy:3128/"),
            ("https://a:b@c@proxy:3128", "https://***@proxy:3128"),
            ("http://proxy:3128", "http://proxy:3128"),
        ] {
            let p = Proxy::from_parts(None, None, env(&[("HTTPS_PROXY", url)])).unwrap();
            assert_eq!(p.display_url(), shown);
            assert!(!format!("{p:?}").contains("ter2"));
            if let Err(e) = p.proxy_config() {
                assert!(!e.to_string().contains("ter2"), "{e}");
            }
        }
        let bad = Proxy::from_parts(Some("http://[bad".into()), None, env(&[])).unwrap();
        assert!(bad.proxy_config().unwrap_err().to_string().starts_with("proxy http://[bad"));
    }
}
