//! The workspace root, resolved once, for `paths::ROOT`.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = std::path::Path::new(&manifest).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    println!("cargo:rustc-env=ECR_CREDD_WORKSPACE_ROOT={}", root.display());
    println!("cargo:rerun-if-changed=build.rs");
}
