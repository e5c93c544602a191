//! `testbed/connect_proxy.py`: a CONNECT proxy that answers as the real AWS
//! API hostnames over TLS (test CA) and relays to moto.

use std::path::{Path, PathBuf};

use crate::aws::Moto;
use crate::http::http;
use crate::paths::{python, script};
use crate::process::{clean_command, free_port, wait_port, Proc};

/// The proxy, running.
pub struct TlsProxy {
    /// Its port.
    pub port: u16,
    /// The test CA to trust (SSL_CERT_FILE).
    pub ca: PathBuf,
    _proc: Proc,
}

impl TlsProxy {
    /// Starts it in front of `moto`, its certificates under `dir`.
    pub fn start(dir: &Path, moto: &Moto) -> TlsProxy {
        TlsProxy::start_to(dir, moto.port)
    }

    /// Starts it relaying to whatever answers as moto on `upstream` (the
    /// fault proxy, say), its certificates under `dir`.
    pub fn start_to(dir: &Path, upstream: u16) -> TlsProxy {
        let port = free_port();
        let certs = dir.join(format!("proxy-certs-{port}"));
        let mut cmd = clean_command(python(), dir);
        cmd.arg(script("connect_proxy.py")).arg(port.to_string()).arg(upstream.to_string()).arg(&certs);
        let proc = Proc::spawn("connect-proxy", &mut cmd);
        wait_port(port, "connect proxy");
        TlsProxy { port, ca: certs.join("ca.pem"), _proc: proc }
    }

    /// Its URL, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Tunnels opened per host, and "plain" (requests that were not CONNECT).
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http(self.port, "GET", "/_stats", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}
