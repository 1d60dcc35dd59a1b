//! Shared by the conformance tests: vectors of other implementations, read in place from
//! `<workspace>/../shared/vectors/`. Without them a test is skipped with a printed reason,
//! except under CI (`CI` set, as `.ci/run` does), where a missing vector fails the test: a
//! conformance suite that silently passes proves nothing.

use std::path::PathBuf;

/// `shared/vectors/<rel>` (a file or a directory) when it exists; `None` when it does not
/// and the test is to be skipped.
///
/// # Panics
/// Under CI, when it does not exist.
pub fn path(rel: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors").join(rel);
    if path.exists() {
        return Some(path);
    }
    let missing = format!("test vectors not found at {} (shared/ beside the repository)", path.display());
    assert!(std::env::var_os("CI").is_none(), "{missing}; CI requires them");
    println!("skipped: {missing}");
    None
}
