//! Debian's docker-registry, with htpasswd auth for user `AWS`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{clean_command, free_port, wait_port, Proc};

/// A running registry on loopback.
pub struct Registry {
    /// Its port.
    pub port: u16,
    /// Its state: config, htpasswd and data.
    pub dir: PathBuf,
    _proc: Proc,
}

impl Registry {
    /// A registry under `dir` accepting `AWS`:`password`.
    pub fn start(dir: &Path, password: &str) -> Registry {
        let port = free_port();
        let dir = dir.join(format!("registry-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = write_htpasswd(&dir, password);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {reg}\n",
            data = dir.join("data").display(),
            reg = reg.display()
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = clean_command("docker-registry", &dir);
        cmd.arg("serve").arg(&config_path);
        let proc = Proc::spawn("docker-registry", &mut cmd);
        wait_port(port, "docker-registry");
        Registry { port, dir, _proc: proc }
    }

    /// Replaces the accepted password; the registry re-reads the file.
    pub fn set_password(&self, password: &str) {
        write_htpasswd(&self.dir, password);
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn write_htpasswd(dir: &Path, password: &str) -> PathBuf {
    let out = Command::new("htpasswd").args(["-Bbn", "AWS", password]).output().unwrap();
    assert!(out.status.success(), "htpasswd failed");
    let path = dir.join("htpasswd");
    std::fs::write(&path, out.stdout).unwrap();
    path
}
