//! The Docker credential-helper protocol (`docker-credential-ecr-credd`).
//! Errors go to stdout with exit code 1, as the protocol requires.

use std::io::{Read, Write};
use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::client::{self, ClientError};
use crate::registry::{normalize_host, parse_ecr_host};
use crate::wire::{ErrorKind, Request, RequestBody, ResponseBody};

/// The exact text that makes docker treat a host as having no credentials.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// Most bytes read from stdin.
pub use client::MAX_STDIN;
/// The usage line.
pub const USAGE: &str = "Usage: docker-credential-ecr-credd <get|store|erase|list|version>";

#[derive(Serialize)]
struct GetReply<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// Runs one helper action; returns the process exit code.
pub fn run(args: &[String], stdin: &mut dyn Read, stdout: &mut dyn Write, socket: &Path) -> i32 {
    // What goes to stdout may be a token: zeroed once written.
    let result: Result<Zeroizing<String>, String> = match args {
        [action] => match action.as_str() {
            "get" => get(stdin, socket),
            // docker and podman call store after every login; succeeding
            // without keeping anything is what makes `docker login` work.
            "store" | "erase" => read_stdin(stdin).map(|_| Zeroizing::default()),
            "list" => Ok(Zeroizing::new(list(socket))),
            "version" | "--version" => Ok(Zeroizing::new(format!(
                "docker-credential-ecr-credd (ecr-credd) {}\n",
                env!("CARGO_PKG_VERSION")
            ))),
            _ => Err(USAGE.to_owned()),
        },
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(out) => {
            if stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(msg) => {
            let _ = writeln!(stdout, "{msg}");
            1
        }
    }
}

fn read_stdin(stdin: &mut dyn Read) -> Result<String, String> {
    let buf = client::read_stdin(stdin).map_err(|e| format!("ecr-credd: {e}"))?;
    String::from_utf8(buf).map_err(|_| "ecr-credd: input on stdin is not UTF-8".to_owned())
}

fn get(stdin: &mut dyn Read, socket: &Path) -> Result<Zeroizing<String>, String> {
    let input = read_stdin(stdin)?;
    let url = input.trim();
    if url.is_empty() {
        return Err("ecr-credd: expected a registry server URL on stdin".to_owned());
    }
    let request = Request::new(RequestBody::Get { host: url.to_owned() });
    let response = match client::request(socket, &request) {
        Ok(r) => r,
        // With `credsStore` docker asks us about every registry; a stopped
        // daemon must not break pulls from Docker Hub or quay.io.
        Err(ClientError::Connect { .. } | ClientError::Denied { .. }) if !could_be_ours(url) => {
            return Err(NOT_FOUND.to_owned())
        }
        Err(e) => return Err(format!("ecr-credd: {e}")),
    };
    match response.body {
        ResponseBody::Credentials { username, secret, .. } => {
            let reply = GetReply { server_url: url, username: &username, secret: secret.expose() };
            let mut out =
                Zeroizing::new(serde_json::to_string(&reply).map_err(|e| format!("ecr-credd: {e}"))?);
            // Reserve first so the push cannot move the token and leave a copy.
            out.reserve_exact(1);
            out.push('\n');
            Ok(out)
        }
        ResponseBody::Error { kind: ErrorKind::NotFound, .. } => Err(NOT_FOUND.to_owned()),
        ResponseBody::Error { message, .. } => Err(format!("ecr-credd: {message}")),
        ResponseBody::Hosts { .. } | ResponseBody::Status { .. } => {
            Err("ecr-credd: the daemon gave an answer that does not fit a get".to_owned())
        }
        ResponseBody::Unknown => Err(format!(
            "ecr-credd: the daemon answered in a form this helper ({}) does not know; upgrade the helper to match the daemon",
            env!("CARGO_PKG_VERSION")
        )),
    }
}

/// Public registries that are never ours: with the daemon down they get
/// "not found", so docker falls back to anonymous access instead of failing.
const WELL_KNOWN_PUBLIC: &[&str] = &[
    "docker.io",
    "quay.io",
    "ghcr.io",
    "gcr.io",
    "pkg.dev",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "registry.gitlab.com",
];

/// Anything but a well-known public registry might be one of ours (ECR names,
/// PrivateLink names, configured aliases), so it gets a real error.
fn could_be_ours(url: &str) -> bool {
    let Ok(host) = normalize_host(url) else {
        return false;
    };
    let host = host.split(':').next().unwrap_or_default();
    parse_ecr_host(host).is_some()
        || !WELL_KNOWN_PUBLIC
            .iter()
            .any(|d| host == *d || host.strip_suffix(d).is_some_and(|p| p.ends_with('.')))
}

fn list(socket: &Path) -> String {
    let hosts = match client::request(socket, &Request::new(RequestBody::List)) {
        Ok(r) => match r.body {
            ResponseBody::Hosts { hosts } => hosts,
            _ => Vec::new(),
        },
        // `list` runs on every `docker build` with credsStore; an empty
        // answer keeps builds of public images working while we are down.
        Err(e) => {
            eprintln!("ecr-credd: {e}");
            Vec::new()
        }
    };
    let map: std::collections::BTreeMap<String, &str> = hosts.into_iter().map(|h| (h, "AWS")).collect();
    let mut out = serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
