//! Golden snapshots: each wire message the programs send or print, pinned
//! byte for byte in a file under `golden/`, where it reads as it is sent.
//! `GOLDEN_OVERWRITE=1 cargo test -p ecr-credd-client` rewrites them; the
//! diff is then the review.

use std::path::PathBuf;

/// Fails unless `actual` is exactly `golden/NAME` (or rewrites it, see above).
pub(crate) fn assert_golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    if std::env::var_os("GOLDEN_OVERWRITE").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GOLDEN_OVERWRITE=1 writes it)", path.display()));
    assert!(
        want == actual,
        "{} differs:\n want: {}\n  got: {}\n(GOLDEN_OVERWRITE=1 rewrites it; review the diff)",
        path.display(),
        String::from_utf8_lossy(&want),
        String::from_utf8_lossy(actual)
    );
}
