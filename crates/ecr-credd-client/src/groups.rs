//! Group names and ids, for the daemon's socket and for the clients' "not in
//! its group" message. Read from `/etc/group`, not NSS: the release binaries
//! link glibc statically and cannot load NSS modules, and the groups that
//! matter here (system groups made by sysusers or groupadd) live there.

/// (name, gid) of each group in /etc/group.
fn groups() -> Vec<(String, u32)> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            Some((name.to_owned(), fields.nth(1)?.parse().ok()?))
        })
        .collect()
}

/// The gid of `group` from /etc/group.
pub fn lookup_group(group: &str) -> Option<u32> {
    groups().into_iter().find_map(|(name, gid)| (name == group).then_some(gid))
}

/// The name of group `gid` from /etc/group, or the number when it has none.
pub fn group_name(gid: u32) -> String {
    groups().into_iter().find_map(|(name, g)| (g == gid).then_some(name)).unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_both_ways_and_a_missing_group_is_none() {
        assert_eq!(lookup_group("root"), Some(0));
        assert_eq!(group_name(0), "root");
        assert_eq!(lookup_group("no-such-group-here"), None);
        assert_eq!(group_name(4_000_000_000), "4000000000");
    }
}
