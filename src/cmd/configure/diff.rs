//! A unified diff of two small texts (config files), for `--dry-run`.

/// One line of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit<'a> {
    Same(&'a str),
    Gone(&'a str),
    Added(&'a str),
}

/// The lines of `old` and `new` as kept, removed and added (a longest
/// common subsequence: config files are small).
fn edits<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Edit<'a>> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > 4_000_000 {
        // Too big to align within a few MB: all of the old, then all of the new.
        return old.iter().map(|l| Edit::Gone(l)).chain(new.iter().map(|l| Edit::Added(l))).collect();
    }
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] =
                if old[i] == new[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push(Edit::Same(old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, as diff -u prints them.
            out.push(Edit::Gone(old[i]));
            i += 1;
        } else {
            out.push(Edit::Added(new[j]));
            j += 1;
        }
    }
    out
}

/// `diff -u` of `old` (at `from`) and `new` (at `to`), three lines of
/// context; empty when they are equal.
pub(crate) fn unified(from: &str, to: &str, old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let script = edits(&a, &b);
    let changed: Vec<usize> =
        script.iter().enumerate().filter(|(_, e)| !matches!(e, Edit::Same(_))).map(|(i, _)| i).collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {from}\n+++ {to}\n");
    let mut k = 0;
    while k < changed.len() {
        // A hunk: changes no more than six lines apart, with three around.
        let start = changed[k].saturating_sub(3);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 7 {
            k += 1;
            end = changed[k];
        }
        let end = (end + 4).min(script.len());
        let line_at = |upto: usize, old_side: bool| {
            script[..upto]
                .iter()
                .filter(|e| match e {
                    Edit::Same(_) => true,
                    Edit::Gone(_) => old_side,
                    Edit::Added(_) => !old_side,
                })
                .count()
        };
        let hunk = &script[start..end];
        let old_len = hunk.iter().filter(|e| !matches!(e, Edit::Added(_))).count();
        let new_len = hunk.iter().filter(|e| !matches!(e, Edit::Gone(_))).count();
        let (old_from, new_from) = (line_at(start, true), line_at(start, false));
        out += &format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            old_from + usize::from(old_len > 0),
            new_from + usize::from(new_len > 0)
        );
        for e in hunk {
            out += &match e {
                Edit::Same(l) => format!(" {l}\n"),
                Edit::Gone(l) => format!("-{l}\n"),
                Edit::Added(l) => format!("+{l}\n"),
            };
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_diff_with_context_and_line_numbers() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\n";
        assert_eq!(
            unified("x", "x.new", old, new),
            "--- x\n+++ x.new\n@@ -2,7 +2,8 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n+i\n"
        );
        assert_eq!(unified("x", "y", old, old), "");
        assert_eq!(unified("x", "y", "", "a\n"), "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+a\n");
        // A file too big to align is shown whole, not aligned in gigabytes.
        let big: String = (0..3000).map(|i| format!("{i}\n")).collect();
        let bigger = big.clone() + "3000\n";
        let d = unified("x", "y", &big, &bigger);
        assert!(d.starts_with("--- x\n+++ y\n@@ -1,3000 +1,3001 @@\n-0\n"), "{}", &d[..60]);
    }
}
