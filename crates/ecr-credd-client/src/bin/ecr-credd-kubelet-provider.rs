//! `ecr-credd-kubelet-provider`: the kubelet image credential provider. No
//! async runtime and no AWS SDK: it only talks to the daemon's socket.

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("ecr-credd-kubelet-provider (ecr-credd) {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // It holds a token for a moment; a crash must not write it to a core file.
    let _ = ecr_credd_client::secret::forbid_core_dumps();
    let socket = ecr_credd_client::client::socket_path();
    let code = ecr_credd_client::kubelet::run(
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &socket,
    );
    std::process::exit(code);
}
