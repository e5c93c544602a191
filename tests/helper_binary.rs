//! The helper is exec'd on every pull and push: it must not carry the AWS
//! SDK, an HTTP stack or an async runtime.

use std::process::Command;

use testbed::{program, require};

#[test]
fn helper_links_no_aws_sdk_http_stack_or_runtime() {
    require!(Binutils);
    check(&program("docker-credential-ecr-credd"), "ecr_credd_client::helper::run");
    check(&program("ecr-credd-kubelet-provider"), "ecr_credd_client::kubelet::run");
}

fn check(helper: &str, own: &str) {
    let out = Command::new("nm")
        .args(["--defined-only", "-C", helper])
        .output()
        .expect("nm (binutils) is installed");
    assert!(out.status.success());
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(symbols.lines().count() > 100, "nm listed the helper's symbols");
    assert!(symbols.contains(own), "the helper's own code is there");
    for forbidden in ["aws_sdk_", "aws_smithy_", "aws_config::", "tokio::runtime", "hyper::", "rustls::"] {
        let hits: Vec<&str> = symbols.lines().filter(|l| l.contains(forbidden)).take(3).collect();
        assert!(hits.is_empty(), "helper links {forbidden}: {hits:?}");
    }
    // The daemon does link them, so the check above can fail.
    let daemon = env!("CARGO_BIN_EXE_ecr-credd");
    let out = Command::new("nm").args(["--defined-only", "-C", daemon]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("aws_sdk_ecr::"));
}
