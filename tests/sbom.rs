//! Every shipped binary carries its dependency list (cargo auditable's
//! `.dep-v0` section: zlib-compressed JSON), read back here out of the
//! release tarballs for both architectures. The versions of the crates that
//! matter most match Cargo.lock's, the SDK-free helper carries no SDK, and
//! each artifact's CycloneDX SBOM, named in SHA256SUMS, names the same
//! versions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use testbed::*;

/// The crates a security review asks about first.
const WATCHED: [&str; 4] = ["aws-sdk-ecr", "aws-sdk-sts", "rustls", "tokio"];

/// Every version Cargo.lock holds, by crate name.
fn lock_versions() -> BTreeMap<String, BTreeSet<String>> {
    let lock = std::fs::read_to_string(format!("{ROOT}/Cargo.lock")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")).and_then(|v| v.strip_suffix('"')))
        };
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            out.entry(name.to_owned()).or_default().insert(version.to_owned());
        }
    }
    out
}

fn le(bytes: &[u8], at: usize, len: usize) -> u64 {
    bytes[at..at + len].iter().rev().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// The bytes of section `name` of a little-endian ELF64 file.
fn section(elf: &[u8], name: &str) -> Option<Vec<u8>> {
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "a little-endian ELF64 file");
    let (shoff, shentsize, shnum, shstrndx) = (
        le(elf, 0x28, 8) as usize,
        le(elf, 0x3a, 2) as usize,
        le(elf, 0x3c, 2) as usize,
        le(elf, 0x3e, 2) as usize,
    );
    let header = |i: usize| {
        let h = shoff + i * shentsize;
        (le(elf, h, 4) as usize, le(elf, h + 24, 8) as usize, le(elf, h + 32, 8) as usize)
    };
    let (_, names_at, names_len) = header(shstrndx);
    let names = &elf[names_at..names_at + names_len];
    (0..shnum).map(header).find_map(|(n, off, size)| {
        let end = names[n..].iter().position(|b| *b == 0)? + n;
        (&names[n..end] == name.as_bytes()).then(|| elf[off..off + size].to_vec())
    })
}

/// The dependency list cargo auditable embedded in `binary`: name → version.
fn audit_data(dir: &Path, binary: &Path) -> BTreeMap<String, String> {
    let elf = std::fs::read(binary).unwrap();
    let packed =
        section(&elf, ".dep-v0").unwrap_or_else(|| panic!("{} has no .dep-v0 section", binary.display()));
    let file = dir.join("dep-v0.zlib");
    std::fs::write(&file, packed).unwrap();
    let inflate =
        "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1], 'rb').read()))";
    let out = Command::new("python3").args(["-c", inflate]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["version"].as_str().unwrap().to_owned()))
        .collect()
}

/// The release tarball for `arch`, unpacked in `dir`: its bin/ directory.
fn unpacked(dir: &Path, arch: &str) -> PathBuf {
    let tarball = dist_file(&format!("-{arch}-linux.tar.gz"));
    let ok = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir).status().unwrap();
    assert!(ok.success());
    let name = tarball.file_name().unwrap().to_string_lossy().trim_end_matches(".tar.gz").to_owned();
    dir.join(name).join("bin")
}

#[test]
fn every_binary_carries_its_dependency_list_and_every_artifact_an_sbom_that_agrees() {
    require!(Dist);
    let tmp = tempfile::tempdir().unwrap();
    let lock = lock_versions();
    let sums = std::fs::read_to_string(format!("{ROOT}/dist/SHA256SUMS")).unwrap();
    for (arch, deb_arch) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        let bin = unpacked(tmp.path(), arch);
        let mut daemon = BTreeMap::new();
        for program in SHIPPED_PROGRAMS {
            let deps = audit_data(tmp.path(), &bin.join(program));
            let shown: Vec<String> =
                WATCHED.iter().filter_map(|c| deps.get(*c).map(|v| format!("{c} {v}"))).collect();
            println!("{arch} {program}: {} crates; {}", deps.len(), shown.join(", "));
            for (name, version) in &deps {
                let locked =
                    lock.get(name).unwrap_or_else(|| panic!("{program} embeds {name}, not in Cargo.lock"));
                assert!(locked.contains(version), "{program}: {name} {version}, Cargo.lock has {locked:?}");
            }
            if program == "ecr-credd" {
                for c in WATCHED {
                    assert!(deps.contains_key(c), "{arch} ecr-credd lacks {c}");
                }
                daemon = deps;
            } else {
                // The helper and the provider are the SDK-free crate.
                for c in ["aws-sdk-ecr", "aws-sdk-sts", "tokio", "hyper"] {
                    assert!(!deps.contains_key(c), "{arch} {program} embeds {c}");
                }
            }
        }
        for artifact in [
            format!("ecr-credd_{}-1_{deb_arch}.deb", env!("CARGO_PKG_VERSION")),
            format!("ecr-credd-{}-1.{arch}.rpm", env!("CARGO_PKG_VERSION")),
            format!("ecr-credd-{}-{arch}-linux.tar.gz", env!("CARGO_PKG_VERSION")),
        ] {
            let name = format!("{artifact}.cdx.json");
            assert!(sums.lines().any(|l| l.ends_with(&format!("  {name}"))), "SHA256SUMS lacks {name}");
            let sbom: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/dist/{name}")).unwrap())
                    .unwrap();
            assert_eq!(sbom["bomFormat"], "CycloneDX", "{name}");
            assert_eq!(sbom["metadata"]["component"]["version"], env!("CARGO_PKG_VERSION"), "{name}");
            let components: BTreeMap<&str, &str> = sbom["components"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
                .collect();
            for c in WATCHED {
                assert_eq!(components.get(c).copied(), daemon.get(c).map(String::as_str), "{name}: {c}");
            }
            for dev in ["proptest", "tempfile", "ecr-credd-testbed"] {
                assert!(!components.contains_key(dev), "{name} lists the dev-dependency {dev}");
            }
        }
    }
}
