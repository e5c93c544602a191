//! The docs match the tree: every path the README's layout table names exists.

use std::path::Path;

use testbed::ROOT;

#[test]
fn every_path_in_the_readmes_layout_table_exists() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let table = readme.split("## Layout").nth(1).expect("a Layout section");
    let paths: Vec<&str> = table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| cell.split(", "))
        .map(|p| p.trim_matches('`'))
        .collect();
    assert!(paths.len() >= 10, "the table lists the tree: {paths:?}");
    let missing: Vec<&&str> = paths.iter().filter(|p| !Path::new(ROOT).join(p).exists()).collect();
    assert!(missing.is_empty(), "named in the README's layout table but absent: {missing:?}");
}
