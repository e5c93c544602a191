//! Doctor's probe of the registry itself, over the network: does it accept
//! the token ECR gave?

use base64::Engine;
use http_body_util::Empty;
use hyper::body::Bytes;

use super::report::{Failed, Passed, Report};
use crate::config::RegistryConfig;

/// Plain HTTP only for a loopback address (a test registry), HTTPS for
/// everything else: the request carries the token, and a name that merely
/// starts like one (`localhost.corp.example`, `127.example`) is not loopback.
fn base_url(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

/// `GET /v2/` (or the repository's tag list, or `HEAD` of a tag's manifest)
/// with the token; `refused_fix` is what to do when it refuses the token.
pub(super) async fn registry_reachable(
    r: &RegistryConfig,
    repo: Option<&str>,
    (user, secret): (&str, &str),
    refused_fix: &str,
    report: &mut Report,
) {
    let host = Some(r.host.as_str());
    // HOST/REPO:TAG heads the manifest; HOST/REPO lists tags; HOST alone is /v2/.
    let path = match repo.map(|r| r.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).ok_or(r)) {
        None => "/v2/".to_owned(),
        Some(Ok((name, tag))) => format!("/v2/{name}/manifests/{tag}"),
        Some(Err(name)) => format!("/v2/{name}/tags/list"),
    };
    let method = if path.contains("/manifests/") { hyper::Method::HEAD } else { hyper::Method::GET };
    let url = format!("{}{path}", base_url(&r.host));
    let connector = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            return report.fail(
                "registry",
                host,
                format!("no TLS roots: {e}"),
                "install ca-certificates".into(),
            )
        }
    };
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let request = hyper::Request::builder()
        .method(method.clone())
        .uri(&url)
        .header(hyper::header::AUTHORIZATION, format!("Basic {auth}"))
        .header(hyper::header::ACCEPT, MANIFEST_TYPES)
        .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(req) => req,
        Err(e) => return report.fail("registry", host, format!("{url}: {e}"), "check the host name".into()),
    };
    let late = Failed::new(format!("{url}: no answer in time"), "check outbound HTTPS to the registry");
    let probe = format!("{method} {path}");
    report
        .step("registry", host, client.request(request), late, |answer| match answer {
            Ok(resp) => judge_registry(resp.status().as_u16(), &probe, repo.is_some(), refused_fix),
            Err(e) => Err(Failed::new(
                format!("{url}: {e}"),
                "check DNS, the VPC endpoint for ECR (dkr), and outbound HTTPS",
            )),
        })
        .await;
}

/// Every manifest type a pull accepts, so a tag of any kind answers.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What the registry's answer to `probe` (`METHOD PATH`) says.
fn judge_registry(status: u16, probe: &str, has_repo: bool, refused_fix: &str) -> Result<Passed<()>, Failed> {
    match status {
        200..=299 => Ok(Passed::new((), format!("{probe} with the token: HTTP {status}"))),
        401 | 403 => Err(Failed::new(format!("{probe} refused the token: HTTP {status}"), refused_fix)),
        404 if has_repo => Err(Failed::new(
            format!("{probe}: HTTP 404"),
            "the repository does not exist (or the name is misspelt)",
        )),
        _ => Err(Failed::new(format!("{probe}: HTTP {status}"), "unexpected answer from the registry")),
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn plain_http_only_for_exact_loopback_addresses() {
        for host in ["127.0.0.1:5000", "127.1.2.3", "localhost", "localhost:5000", "[::1]:5000", "[::1]"] {
            assert!(base_url(host).starts_with("http://"), "{host}");
        }
        for host in [
            "localhost.corp.example",
            "localhost.corp.example:5000",
            "127.example",
            "127.0.0.1.nip.example",
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            "[::2]:5000",
        ] {
            assert!(base_url(host).starts_with("https://"), "{host}");
        }
    }
}
