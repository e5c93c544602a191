//! The end-to-end test bed: moto (STS + ECR), our IMDSv2 double, Debian's
//! docker-registry, real clients and the daemon, each a real process on
//! loopback with a clean environment, stopped when dropped (also when a test
//! fails). Tests and benches `use testbed::*;` and start with
//! [`require!`] naming what they need.

pub mod aws;
pub mod clients;
pub mod daemon;
pub mod engine;
pub mod fault_proxy;
pub mod fleet;
pub mod gate;
pub mod http;
pub mod paths;
pub mod process;
pub mod registry;
pub mod roots;
pub mod sources;
pub mod stages;
pub mod systemd;
pub mod timing;
pub mod tls_proxy;

pub use aws::{iam_bed, Imds, Moto, ACCOUNT, ECR_HOST, PASSWORD, ROLE};
pub use clients::{
    container_client, helper_as, helper_auth_file, make_oci_image, run_client, run_helper, skopeo_copy,
};
pub use daemon::{alias_config, doctor, registry_toml, Daemon, DaemonBuilder, Stack, ALIAS};
pub use gate::Need;
pub use http::{http, http_with, raw_exchange};
pub use paths::{
    daemon_bin, dist_file, helper_bin, kubelet_provider_bin, program, python, script, venv_tool, ROOT,
    SHIPPED_PROGRAMS,
};
pub use process::{
    clean_command, free_port, open_to_all, output_text, output_with_stdin, run_clean, run_ok, said,
    wait_port, wait_until, Proc, Said,
};
pub use registry::Registry;
pub use systemd::exposure_score;
