use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use super::*;
use crate::wire::{self, Response};

/// A fake daemon: answers each connection's request line with `answer(line)`.
fn fake(answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = Vec::new();
            let _ = BufReader::new(&stream).read_until(b'\n', &mut line);
            let _ = stream.write_all(&answer(&line));
        }
    });
    (dir, path)
}

/// A fake daemon of this version: answers with `reply(request)`.
fn fake_daemon(reply: fn(&wire::Request) -> Response) -> (tempfile::TempDir, PathBuf) {
    fake(move |line| wire::encode(&reply(&wire::decode_request(line).unwrap())).to_vec())
}

/// A fake newer daemon: answers every request with `frame`, as recorded.
fn fake_raw_daemon(frame: &'static [u8]) -> (tempfile::TempDir, PathBuf) {
    fake(move |_| frame.to_vec())
}

fn run_helper(args: &[&str], stdin: &str, socket: &Path) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = run(&args, &mut stdin.as_bytes(), &mut out, socket);
    (code, String::from_utf8(out).unwrap())
}

fn answer(req: &wire::Request) -> Response {
    match &req.body {
        RequestBody::Get { host } if host.contains("127.0.0.1:5000") => Response::new(ResponseBody::Credentials {
            host: "127.0.0.1:5000".into(),
            username: "AWS".into(),
            secret: "pa\"ss".into(),
            expires_at: 1,
        }),
        RequestBody::Get { host } if host.contains("broken") => Response::error(
            ErrorKind::Unavailable,
            "broken.example (210987654321, us-east-1): sts:AssumeRole on arn:aws:iam::210987654321:role/r denied: AccessDenied",
        ),
        RequestBody::Get { .. } => Response::error(ErrorKind::NotFound, "docker.io is not a registry ecr-credd serves"),
        RequestBody::Status | RequestBody::Unsupported | RequestBody::GetWorkload { .. } => {
            Response::error(ErrorKind::BadRequest, "not in this fake")
        }
        RequestBody::List => Response::new(ResponseBody::Hosts {
            hosts: vec!["b.example".into(), "127.0.0.1:5000".into()],
        }),
    }
}

#[test]
fn get_prints_docker_json_byte_for_byte() {
    let (_d, sock) = fake_daemon(answer);
    let (code, out) = run_helper(&["get"], "  https://127.0.0.1:5000\n", &sock);
    assert_eq!(code, 0);
    crate::golden::assert_golden("helper-get.json", out.as_bytes());
}

#[test]
fn unknown_host_is_exactly_not_found() {
    let (_d, sock) = fake_daemon(answer);
    let (code, out) = run_helper(&["get"], "docker.io", &sock);
    assert_eq!((code, out.trim()), (1, NOT_FOUND));
}

#[test]
fn known_but_failing_registry_names_the_step() {
    let (_d, sock) = fake_daemon(answer);
    let (code, out) = run_helper(&["get"], "broken.example", &sock);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "ecr-credd: broken.example (210987654321, us-east-1): sts:AssumeRole on arn:aws:iam::210987654321:role/r denied: AccessDenied\n"
    );
    assert!(!out.contains("not found"));
}

#[test]
fn list_store_erase_version_usage() {
    let (_d, sock) = fake_daemon(answer);
    assert_eq!(
        run_helper(&["list"], "junk", &sock),
        (0, "{\"127.0.0.1:5000\":\"AWS\",\"b.example\":\"AWS\"}\n".into())
    );
    let store = "{\"ServerURL\":\"x\",\"Username\":\"AWS\",\"Secret\":\"s\"}";
    assert_eq!(run_helper(&["store"], store, &sock), (0, String::new()));
    assert_eq!(run_helper(&["erase"], "https://x", &sock), (0, String::new()));
    let (code, out) = run_helper(&["version"], "", &sock);
    assert_eq!(code, 0);
    assert!(out.starts_with("docker-credential-ecr-credd (ecr-credd) "));
    for args in [&[][..], &["fetch"][..], &["get", "extra"][..]] {
        assert_eq!(run_helper(args, "", &sock), (1, format!("{USAGE}\n")));
    }
}

#[test]
fn bad_stdin_gets_specific_errors() {
    let (_d, sock) = fake_daemon(answer);
    let (code, out) = run_helper(&["get"], " \n ", &sock);
    assert_eq!((code, out.as_str()), (1, "ecr-credd: expected a registry server URL on stdin\n"));
    let big = "a".repeat(MAX_STDIN + 1);
    let (code, out) = run_helper(&["get"], &big, &sock);
    assert_eq!(code, 1);
    assert!(out.contains("larger than 65536 bytes"), "{out}");
    let mut out = Vec::new();
    let code = run(&["get".to_owned()], &mut &[0xff, 0xfe][..], &mut out, &sock);
    assert_eq!(
        (code, String::from_utf8(out).unwrap().as_str()),
        (1, "ecr-credd: input on stdin is not UTF-8\n")
    );
    let (code, out) = run_helper(&["store"], &big, &sock);
    assert_eq!(code, 1);
    assert!(out.contains("larger than"), "{out}");
}

#[test]
fn daemon_down() {
    let sock = Path::new("/nonexistent/ecr-credd.sock");
    let (code, out) = run_helper(&["get"], "111122223333.dkr.ecr.eu-west-1.amazonaws.com", sock);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("ecr-credd: cannot reach the ecr-credd daemon at /nonexistent/ecr-credd.sock"),
        "{out}"
    );
    assert!(out.contains("systemctl start"), "{out}");
    // Public registries must keep working while the daemon is down.
    assert_eq!(run_helper(&["get"], "https://index.docker.io/v1/", sock), (1, format!("{NOT_FOUND}\n")));
    assert_eq!(run_helper(&["list"], "", sock), (0, "{}\n".into()));
}

#[test]
fn a_newer_daemons_answers_are_shown_not_misread() {
    // An error kind this helper does not know: the daemon's message is shown.
    let (_d, sock) = fake_raw_daemon(
        b"{\"v\":1,\"type\":\"error\",\"kind\":\"throttled\",\"message\":\"ECR is throttling account 210987654321; retry in 3s\"}\n",
    );
    let (code, out) = run_helper(&["get"], "127.0.0.1:5000", &sock);
    assert_eq!((code, out.as_str()), (1, "ecr-credd: ECR is throttling account 210987654321; retry in 3s\n"));
    // An answer type it does not know: said plainly, not "unreadable answer".
    let (_d, sock) = fake_raw_daemon(b"{\"v\":1,\"type\":\"credentials_v2\",\"token\":{\"parts\":[1,2]}}\n");
    let (code, out) = run_helper(&["get"], "127.0.0.1:5000", &sock);
    assert_eq!(code, 1);
    assert!(out.starts_with("ecr-credd: the daemon answered in a form this helper"), "{out}");
}
