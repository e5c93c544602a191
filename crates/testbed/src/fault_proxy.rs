//! A bounded, test-only HTTP proxy in front of moto that counts calls per
//! API and injects faults: throttling (in STS's XML or ECR's JSON form),
//! 503s, delays and dropped connections. One request per connection. It can
//! also stand in for AWS's quotas: a token bucket per API, with every call
//! logged and traced to the node that made it (see [`bucket`]).

mod bucket;

pub use bucket::{Bucket, Call, Meter, Rejection};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to each request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Forward unchanged.
    None,
    /// Answer 400 Throttling / ThrottlingException.
    Throttle,
    /// Answer 503.
    Unavailable,
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer 403 AccessDenied (a role whose trust policy refuses the caller).
    Deny,
    /// Answer 400 with this STS error code and message (e.g.
    /// `InvalidIdentityToken`, `Incorrect token audience`).
    StsError(&'static str, &'static str),
}

struct State {
    fault: Option<Fault>,
    /// Faults for one API only, before `fault`.
    api_faults: HashMap<&'static str, Fault>,
    counts: HashMap<String, u64>,
    started: Instant,
    buckets: HashMap<&'static str, bucket::Meter>,
    calls: Vec<Call>,
    /// Assumed-role key → the node key that assumed it.
    owners: HashMap<String, String>,
}

/// The proxy, running until dropped.
pub struct FaultProxy {
    /// Its port.
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of 127.0.0.1:`upstream`, forwarding unchanged.
    pub fn start(upstream: u16) -> FaultProxy {
        FaultProxy::start_to_all(vec![upstream])
    }

    /// A proxy in front of every port of `upstreams` (on 127.0.0.1), each
    /// connection to the next in turn: one moto answers one call at a time,
    /// so a fleet's emulated AWS is several.
    pub fn start_to_all(upstreams: Vec<u16>) -> FaultProxy {
        assert!(!upstreams.is_empty(), "a fault proxy needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            fault: None,
            api_faults: HashMap::new(),
            counts: HashMap::new(),
            started: Instant::now(),
            buckets: HashMap::new(),
            calls: Vec::new(),
            owners: HashMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut turn = 0;
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st.clone();
                        let upstream = upstreams[turn % upstreams.len()];
                        turn += 1;
                        std::thread::spawn(move || {
                            let _ = handle(conn, upstream, &st);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy { port, state, stop, thread: Some(thread) }
    }

    /// What to do to every request from now on.
    pub fn set(&self, fault: Fault) {
        lock(&self.state).fault = Some(fault);
    }

    /// What to do to every `api` request from now on, whatever [`Self::set`] says.
    pub fn set_for(&self, api: &'static str, fault: Fault) {
        lock(&self.state).api_faults.insert(api, fault);
    }

    /// Puts `api` (`AssumeRole`, `GetAuthorizationToken`) behind `bucket`,
    /// full at first.
    pub fn limit(&self, api: &'static str, bucket: Bucket) {
        let now = Instant::now();
        lock(&self.state).buckets.insert(api, bucket::Meter::new(bucket, now));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// When the proxy started: [`Call::at`] counts from here.
    pub fn started(&self) -> Instant {
        lock(&self.state).started
    }

    /// Calls seen for `api` (AssumeRole, GetAuthorizationToken, GetCallerIdentity).
    pub fn count(&self, api: &str) -> u64 {
        lock(&self.state).counts.get(api).copied().unwrap_or(0)
    }

    /// Its base URL, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment pointing a daemon at `imds` and, through this proxy, at AWS
    /// (as [`crate::Daemon::aws_env`] does without the proxy).
    pub fn aws_env(&self, imds: &crate::Imds) -> Vec<(&'static str, String)> {
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()), ("AWS_ENDPOINT_URL", self.endpoint())]
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP message (head and Content-Length body).
fn read_message(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(buf);
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return Ok(buf);
        }
    }
}

/// Adds `Connection: close` so neither side reuses the connection.
fn close_after(mut msg: Vec<u8>) -> Vec<u8> {
    if let Some(end) = msg.windows(4).position(|w| w == b"\r\n\r\n") {
        msg.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
    }
    msg
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts and logs the call; `Err` with the rejection when its bucket is spent.
/// Logs the call and meters it: what to do with it and its place in the
/// log, or how to turn it away.
fn meter(state: &Mutex<State>, api: &'static str, key: String) -> Result<(Fault, usize), Rejection> {
    let now = Instant::now();
    let mut st = lock(state);
    *st.counts.entry(api.to_owned()).or_default() += 1;
    let (admitted, rejection) = match st.buckets.get_mut(api) {
        Some(m) => (m.admit(now), m.bucket.rejection),
        None => (true, Rejection::Http400),
    };
    let node = st.owners.get(&key).cloned().unwrap_or_else(|| key.clone());
    let at = now.saturating_duration_since(st.started);
    st.calls.push(Call { at, api, admitted, key, node, answered: None });
    if admitted {
        Ok((st.api_faults.get(api).copied().or(st.fault).unwrap_or(Fault::None), st.calls.len() - 1))
    } else {
        Err(rejection)
    }
}

fn handle(mut conn: TcpStream, upstream: u16, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = read_message(&mut conn)?;
    let text = String::from_utf8_lossy(&request);
    let ecr = text.to_ascii_lowercase().contains("x-amz-target:");
    let api = ["GetAuthorizationToken", "AssumeRoleWithWebIdentity", "AssumeRole", "GetCallerIdentity"]
        .into_iter()
        // Longest first: AssumeRole is a prefix of AssumeRoleWithWebIdentity.
        .find(|a| text.contains(&format!("Action={a}")) || text.contains(&format!(".{a}")))
        .unwrap_or("other");
    let key = bucket::signing_key(&text);
    let (fault, call) = match meter(state, api, key.clone()) {
        Ok(metered) => metered,
        Err(rejection) => return conn.write_all(throttled(ecr, rejection).as_bytes()),
    };
    let (status, body, content_type, extra) = match fault {
        Fault::None => return forward(&mut conn, upstream, &request, (api, call), &key, state),
        Fault::Delay(d) => {
            std::thread::sleep(d.min(Duration::from_secs(30)));
            return forward(&mut conn, upstream, &request, (api, call), &key, state);
        }
        Fault::Drop => return Ok(()),
        Fault::Throttle if ecr => (
            "400 Bad Request",
            "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}".to_owned(),
            "application/x-amz-json-1.1",
            "x-amzn-ErrorType: ThrottlingException\r\n",
        ),
        Fault::Throttle => ("400 Bad Request", sts_error("Throttling", "Rate exceeded"), "text/xml", ""),
        Fault::Deny if ecr => (
            "400 Bad Request",
            "{\"__type\":\"AccessDeniedException\",\"message\":\"not authorized\"}".to_owned(),
            "application/x-amz-json-1.1",
            "x-amzn-ErrorType: AccessDeniedException\r\n",
        ),
        Fault::Deny => (
            "403 Forbidden",
            sts_error("AccessDenied", "not authorized to perform: sts:AssumeRole"),
            "text/xml",
            "",
        ),
        Fault::Unavailable if ecr => (
            "503 Service Unavailable",
            "{\"__type\":\"ServiceUnavailableException\",\"message\":\"try later\"}".to_owned(),
            "application/x-amz-json-1.1",
            "x-amzn-ErrorType: ServiceUnavailableException\r\n",
        ),
        Fault::Unavailable => {
            ("503 Service Unavailable", sts_error("ServiceUnavailable", "try later"), "text/xml", "")
        }
        Fault::StsError(code, message) => ("400 Bad Request", sts_error(code, message), "text/xml", ""),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes())
}

/// A throttling answer in the API's own form.
fn throttled(ecr: bool, rejection: Rejection) -> String {
    let status = match rejection {
        Rejection::Http400 => "400 Bad Request",
        Rejection::Http429 => "429 Too Many Requests",
    };
    let (body, content_type, extra) = if ecr {
        (
            "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}".to_owned(),
            "application/x-amz-json-1.1",
            "x-amzn-ErrorType: ThrottlingException\r\n",
        )
    } else {
        (sts_error("Throttling", "Rate exceeded"), "text/xml", "")
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn sts_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    )
}

/// A form field of a Query-protocol (STS) request body, percent-decoded.
fn form_value(request: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(request);
    let body = text.split_once("\r\n\r\n")?.1;
    let raw = body.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")))?;
    let mut out = Vec::new();
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Relays the request; remembers whose key an AssumeRole handed out.
fn forward(
    conn: &mut TcpStream,
    upstream: u16,
    request: &[u8],
    (api, call): (&str, usize),
    key: &str,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    up.write_all(&close_after(request.to_vec()))?;
    let response = read_message(&mut up)?;
    {
        let mut st = lock(state);
        let answered = st.started.elapsed();
        if let Some(c) = st.calls.get_mut(call) {
            c.answered = Some(answered);
        }
    }
    if api == "AssumeRole" {
        if let Some(issued) = bucket::issued_key(&response) {
            let mut st = lock(state);
            let node = st.owners.get(key).cloned().unwrap_or_else(|| key.to_owned());
            st.owners.insert(issued, node);
        }
    }
    // An unsigned web-identity exchange belongs to no node: its key is
    // traced to the role it was issued for, as `role:ARN`.
    if api == "AssumeRoleWithWebIdentity" {
        if let (Some(issued), Some(role)) = (bucket::issued_key(&response), form_value(request, "RoleArn")) {
            lock(state).owners.insert(issued, format!("role:{role}"));
        }
    }
    conn.write_all(&close_after(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers every request with its own name.
    fn named_upstream(name: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = read_message(&mut conn);
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}", name.len());
            }
        });
        port
    }

    #[test]
    fn calls_go_to_each_upstream_in_turn() {
        let proxy = FaultProxy::start_to_all(vec![named_upstream("a"), named_upstream("b")]);
        let answers: Vec<String> = (0..4)
            .map(|_| crate::http::http(proxy.port, "POST", "/", "Action=GetCallerIdentity").1)
            .collect();
        assert_eq!(answers, ["a", "b", "a", "b"]);
    }
}
