//! The commands that ask the running daemon: `get` and `status`.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::table;
use ecr_credd_client::client;
use ecr_credd_client::wire::{ErrorKind, Request, RequestBody, ResponseBody};

/// `get`: the daemon's answer for `host`, with the secret masked.
pub(super) fn get(host: &str, socket: Option<PathBuf>) -> Result<String> {
    let socket = socket.unwrap_or_else(client::socket_path);
    let response = client::request(&socket, &Request::new(RequestBody::Get { host: host.to_owned() }))?;
    match response.body {
        ResponseBody::Credentials { host, username, secret, expires_at } => {
            let expires = UNIX_EPOCH + Duration::from_secs(expires_at);
            let left = expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
            let when = aws_smithy_types::DateTime::from(expires)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_else(|_| expires_at.to_string());
            Ok(format!(
                "host:     {host}\nusername: {username}\nsecret:   ******** ({} bytes, masked)\nexpires:  {when} (in {}h{:02}m)\n",
                secret.len(),
                left.as_secs() / 3600,
                left.as_secs() / 60 % 60
            ))
        }
        ResponseBody::Error { kind: ErrorKind::NotFound, message } => bail!("{message}"),
        ResponseBody::Error { message, .. } => {
            Err(anyhow::anyhow!("{message}")).context(format!("asking {}", socket.display()))
        }
        ResponseBody::Hosts { .. } | ResponseBody::Status { .. } | ResponseBody::Unknown => {
            bail!("unexpected answer from the daemon (is it newer than this ecr-credd?)")
        }
    }
}

fn ago_or_in(unix: Option<u64>, now: u64) -> String {
    match unix {
        None => "-".into(),
        Some(t) if t >= now => format!("in {}", short(t - now)),
        Some(t) => format!("{} ago", short(now - t)),
    }
}

fn short(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `status`: (ready, the table or JSON).
pub(super) fn status(socket: Option<PathBuf>, as_json: bool) -> Result<(bool, String)> {
    let socket = socket.unwrap_or_else(client::socket_path);
    let response = client::request(&socket, &Request::new(RequestBody::Status))?;
    let (ready, registries, source) = match response.body {
        ResponseBody::Status { ready, registries, credential_source } => {
            (ready, registries, credential_source)
        }
        ResponseBody::Error { message, .. } => bail!("{message}"),
        _ => bail!("unexpected answer from the daemon"),
    };
    if as_json {
        let text = serde_json::to_string_pretty(
            &serde_json::json!({ "ready": ready, "credential_source": source, "registries": registries }),
        )?;
        return Ok((ready, text + "\n"));
    }
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rows: Vec<[String; 7]> = registries
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.account.clone(),
                r.region.clone(),
                if r.ready { "yes".into() } else { "NO".into() },
                ago_or_in(r.expires_at, now),
                ago_or_in(r.next_refresh, now),
                match &r.last_error {
                    Some(e) => format!("{} failures: {e}", r.consecutive_failures),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut out =
        table(["HOST", "ACCOUNT", "REGION", "READY", "EXPIRES", "NEXT REFRESH", "LAST ERROR"], &rows);
    if let Some(source) = source {
        out += &format!("base credentials: {source}\n");
    }
    out += if ready { "ready\n" } else { "NOT READY\n" };
    Ok((ready, out))
}
