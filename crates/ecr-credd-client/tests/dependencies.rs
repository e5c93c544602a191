//! The client programs are exec'd on every pull: the crate must not grow an
//! AWS SDK, an async runtime or an HTTP stack, not even transitively. Checked
//! on the workspace's Cargo.lock, which is what every build uses.

use std::collections::{BTreeSet, HashMap};

#[test]
fn no_aws_sdk_async_runtime_or_http_stack_in_the_client_crate() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    for package in lock["package"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let list = package.get("dependencies").and_then(|d| d.as_array());
        // "name" or "name version" when two versions are locked.
        let names = list.into_iter().flatten().filter_map(|d| d.as_str()?.split(' ').next());
        deps.entry(name).or_default().extend(names);
    }
    // The lock lists dev-dependencies too: tests may use them, the programs do not.
    let dev_only = ["tempfile", "toml"];
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> =
        deps["ecr-credd-client"].iter().copied().filter(|d| !dev_only.contains(d)).collect();
    while let Some(name) = todo.pop() {
        if seen.insert(name) {
            todo.extend(deps.get(name).into_iter().flatten());
        }
    }
    let forbidden: Vec<&&str> = seen
        .iter()
        .filter(|n| n.starts_with("aws-") || ["tokio", "hyper", "rustls", "reqwest"].contains(n))
        .collect();
    assert!(forbidden.is_empty(), "the client crate pulls in {forbidden:?}");
    assert!(seen.contains("serde_json") && seen.contains("zeroize"), "the walk found its real dependencies");
    // The daemon does depend on them, so the walk can find them.
    assert!(deps["ecr-credd"].contains(&"aws-sdk-ecr"));
}
