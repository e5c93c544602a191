//! The signed repositories `make release` writes to dist/repo: every .rpm
//! verifies with the release key and a tampered copy does not, and Debian's
//! dnf reads the yum repository with gpgcheck and repo_gpgcheck on and
//! resolves ecr-credd for both architectures; a key given in RELEASE_GPG_KEY
//! (a file or its text) is the one that signs. The apt repository is
//! installed from in the Debian 11 root (tests/debian11.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testbed::*;

fn repo() -> PathBuf {
    Path::new(ROOT).join("dist/repo")
}

fn rpms() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for arch in ["x86_64", "aarch64"] {
        let dir = repo().join("rpm").join(arch);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            if e.path().extension().is_some_and(|x| x == "rpm") {
                out.push(e.path());
            }
        }
    }
    out
}

/// `rpm --dbpath DB -K FILE`.
fn rpm_k(db: &Path, file: &Path) -> Output {
    Command::new("rpm").arg("--dbpath").arg(db).arg("-K").arg(file).output().unwrap()
}

/// A copy of `file` in `dir` with one byte of its payload changed.
fn tampered(dir: &Path, file: &Path) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x55;
    let copy = dir.join(file.file_name().unwrap());
    std::fs::write(&copy, bytes).unwrap();
    copy
}

#[test]
fn every_rpm_is_signed_with_the_release_key_and_a_tampered_copy_fails() {
    require!(Dist, PackageTools);
    let tmp = tempfile::tempdir().unwrap();
    let (db, empty) = (tmp.path().join("db"), tmp.path().join("empty-db"));
    let key = repo().join("ecr-credd-release.asc");
    let import = Command::new("rpm").arg("--dbpath").arg(&db).arg("--import").arg(&key).output().unwrap();
    assert!(import.status.success(), "rpm --import: {}", output_text(&import));
    let files = rpms();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let out = rpm_k(&db, file);
        let said = output_text(&out);
        println!("rpm -K {}", said.trim());
        assert!(out.status.success() && said.contains("digests signatures OK"), "{said}");
        // Without the key the signature is there but cannot be trusted.
        std::fs::create_dir_all(&empty).unwrap();
        let unknown = output_text(&rpm_k(&empty, file));
        assert!(unknown.contains("SIGNATURES NOT OK") || unknown.contains("NOKEY"), "{unknown}");
        let bad = tampered(tmp.path(), file);
        let out = rpm_k(&db, &bad);
        let said = output_text(&out);
        println!("rpm -K (tampered) {}", said.trim());
        assert!(!out.status.success() && said.contains("NOT OK"), "a tampered rpm verified: {said}");
    }
}

/// `dnf repoquery ecr-credd` as `arch` against the yum repository under
/// `base` with gpgcheck and repo_gpgcheck; (ok, output).
fn dnf_query(dir: &Path, base: &Path, arch: &str) -> (bool, String) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join(format!("dnf-{arch}.conf"));
    std::fs::write(
        &conf,
        format!(
            "[main]\nreposdir=/nonexistent\ncachedir={cache}\ngpgcheck=1\nrepo_gpgcheck=1\n\n\
             [ecr-credd]\nname=ecr-credd\nbaseurl=file://{base}/rpm/$basearch/\ngpgcheck=1\nrepo_gpgcheck=1\n\
             gpgkey=file://{key}\n",
            cache = dir.join(format!("cache-{arch}")).display(),
            base = base.display(),
            key = base.join("ecr-credd-release.asc").display(),
        ),
    )
    .unwrap();
    let out = Command::new("dnf")
        .arg("-c")
        .arg(&conf)
        .arg("--installroot")
        .arg(dir.join(format!("root-{arch}")))
        .args(["--releasever", "2023", "--forcearch", arch, "-y", "--quiet", "repoquery"])
        .args(["--qf", "%{name} %{version} %{arch}", "ecr-credd"])
        .output()
        .unwrap();
    (out.status.success(), output_text(&out))
}

#[test]
fn dnf_resolves_ecr_credd_for_both_architectures_with_every_signature_checked() {
    require!(Dist, PackageTools);
    assert!(Path::new("/usr/bin/dnf").exists(), "Debian's dnf (make deps installs it)");
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["x86_64", "aarch64"] {
        let (ok, said) = dnf_query(tmp.path(), &repo(), arch);
        println!("dnf repoquery --forcearch {arch}: {}", said.trim());
        assert!(ok, "{said}");
        assert!(said.contains(&format!("ecr-credd {} {arch}", env!("CARGO_PKG_VERSION"))), "{said}");
    }
    // A repository whose metadata changed after signing is refused.
    let copy = tmp.path().join("copy");
    let cp = Command::new("cp").arg("-a").arg(repo()).arg(&copy).status().unwrap();
    assert!(cp.success());
    let repomd = copy.join("rpm/x86_64/repodata/repomd.xml");
    let text = std::fs::read_to_string(&repomd).unwrap();
    std::fs::write(&repomd, text.replacen("<revision>", "<revision>1", 1)).unwrap();
    let (ok, said) = dnf_query(&tmp.path().join("t"), &copy, "x86_64");
    println!("dnf, tampered repomd.xml: {}", said.trim());
    assert!(!ok, "dnf read a repository whose signature does not match: {said}");
}

/// `gpg ARGS` in the keyring at `home`.
fn gpg(home: &Path, args: &[&str]) -> Output {
    Command::new("gpg").env("GNUPGHOME", home).arg("--batch").args(args).output().unwrap()
}

/// scripts/repo.sh over copies of dist's packages in `dir`, with
/// RELEASE_GPG_KEY set to `key`.
fn sign_with(dir: &Path, key: &str) -> Output {
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    for e in std::fs::read_dir(Path::new(ROOT).join("dist")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "deb" || x == "rpm") {
            std::fs::copy(e.path(), dist.join(e.file_name())).unwrap();
        }
    }
    Command::new("sh")
        .arg(Path::new(ROOT).join("scripts/repo.sh"))
        .env("DIST", &dist)
        .env("RELEASE_GPG_KEY", key)
        .output()
        .unwrap()
}

#[test]
fn release_gpg_key_signs_the_repositories_from_a_file_or_its_text_and_a_bad_one_is_refused() {
    require!(Dist, PackageTools, RepoTools);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let made = gpg(
        &home,
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test Release <t@localhost>",
            "rsa3072",
            "sign",
            "never",
        ],
    );
    assert!(made.status.success(), "{}", output_text(&made));
    let listed =
        String::from_utf8_lossy(&gpg(&home, &["--list-secret-keys", "--with-colons"]).stdout).into_owned();
    let fpr = listed.lines().find_map(|l| l.strip_prefix("fpr:")).map(|l| l.trim_matches(':').to_owned());
    let fpr = fpr.unwrap_or_else(|| panic!("no fingerprint in {listed}"));
    let secret =
        gpg(&home, &["--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys"]);
    let (secret_file, public_file) = (tmp.path().join("release.asc"), tmp.path().join("public.asc"));
    std::fs::write(&secret_file, &secret.stdout).unwrap();
    std::fs::write(&public_file, gpg(&home, &["--armor", "--export"]).stdout).unwrap();

    let secret_text = String::from_utf8(secret.stdout).unwrap();
    for (how, key) in [("a file", secret_file.display().to_string()), ("its text", secret_text)] {
        let dir = tmp.path().join(how.replace(' ', "-"));
        let out = sign_with(&dir, &key);
        let said = output_text(&out);
        assert!(out.status.success(), "RELEASE_GPG_KEY as {how}: {said}");
        assert!(said.contains(&format!("signed by {fpr}")), "{said}");
        assert!(!said.contains("THROWAWAY"), "{said}");
        let repo = dir.join("dist/repo");
        // apt's view: InRelease verifies against the published keyring, which is that key.
        let keyring = repo.join("ecr-credd-archive-keyring.gpg");
        let shown = gpg(&home, &["--show-keys", "--with-colons", &keyring.display().to_string()]);
        assert!(String::from_utf8_lossy(&shown.stdout).contains(&fpr), "{}", output_text(&shown));
        let verified = Command::new("gpgv")
            .arg("--keyring")
            .arg(&keyring)
            .arg(repo.join("deb/dists/stable/InRelease"))
            .output()
            .unwrap();
        assert!(verified.status.success(), "gpgv InRelease: {}", output_text(&verified));
        // rpm's view: every rpm verifies with the published .asc.
        let db = dir.join("rpmdb");
        let import = Command::new("rpm")
            .arg("--dbpath")
            .arg(&db)
            .arg("--import")
            .arg(repo.join("ecr-credd-release.asc"))
            .output()
            .unwrap();
        assert!(import.status.success(), "rpm --import: {}", output_text(&import));
        for arch in ["x86_64", "aarch64"] {
            let rpm = repo.join(format!("rpm/{arch}/ecr-credd-{}-1.{arch}.rpm", env!("CARGO_PKG_VERSION")));
            let said = output_text(&rpm_k(&db, &rpm));
            println!("RELEASE_GPG_KEY as {how}: rpm -K {}", said.trim());
            assert!(said.contains("digests signatures OK"), "{said}");
        }
    }

    // A key that is not there, or not a secret key, is refused by name.
    let refused = [
        (
            "/nonexistent/release.asc".to_owned(),
            "RELEASE_GPG_KEY is neither a file nor an armored secret key",
        ),
        (public_file.display().to_string(), "RELEASE_GPG_KEY holds no secret key (a public key only?)"),
    ];
    for (key, why) in refused {
        let out = sign_with(&tmp.path().join("refused"), &key);
        let said = output_text(&out);
        assert!(!out.status.success() && said.contains(why), "RELEASE_GPG_KEY={key}: {said}");
        assert!(!said.contains("THROWAWAY"), "{said}");
    }
}
