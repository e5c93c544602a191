//! `docker-credential-ecr-credd`: the Docker credential helper. No async
//! runtime and no AWS SDK: it only talks to the daemon's socket.

fn main() {
    // It holds a token for a moment; a crash must not write it to a core file.
    let _ = ecr_credd_client::secret::forbid_core_dumps();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let socket = ecr_credd_client::client::socket_path();
    let code = ecr_credd_client::helper::run(
        &args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &socket,
    );
    std::process::exit(code);
}
