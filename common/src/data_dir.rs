//! Which directory a process keeps its data in, as its stores open their files there: the
//! operations endpoint reports that directory's size and its filesystem's free space, so a
//! filling disk can be alerted on before a store fails.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Notes that a store keeps `file` (its parent directory is reported).
pub fn note_file(file: &Path) {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// The directories noted so far, first noted first.
pub fn noted() -> Vec<PathBuf> {
    DIRS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_is_noted_once() {
        note_file(Path::new("/tmp/emberline-test-a/log.redb"));
        note_file(Path::new("/tmp/emberline-test-a/projections.redb"));
        note_file(Path::new("/tmp/emberline-test-b/outbox.redb"));
        let noted = noted();
        let count = |d: &str| noted.iter().filter(|p| p == &Path::new(d)).count();
        assert_eq!(count("/tmp/emberline-test-a"), 1);
        assert_eq!(count("/tmp/emberline-test-b"), 1);
    }
}
