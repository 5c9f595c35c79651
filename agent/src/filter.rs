//! Path selection for backups and restores: chosen sub-paths and exclude patterns.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Which entries below a root take part.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these relative paths and what lies below them (plus their ancestors); all if empty.
    pub paths: Vec<PathBuf>,
    /// Glob patterns of entries to leave out: `*` and `?` within a name, `**` across `/`.
    /// A pattern without `/` matches the entry's name, one with `/` its relative path.
    pub exclude: Vec<String>,
}

impl Selection {
    /// A selection of `paths` (normalized to relative paths) without excludes.
    pub fn new(paths: &[PathBuf], exclude: &[String]) -> Self {
        let paths = paths
            .iter()
            .map(|p| p.components().filter(|c| matches!(c, Component::Normal(_))).collect())
            .collect();
        Self {
            paths,
            exclude: exclude.to_vec(),
        }
    }

    /// Whether the entry at `rel` (relative to the root) takes part.
    pub fn includes(&self, rel: &Path) -> bool {
        let on_path = self.paths.is_empty() || self.paths.iter().any(|p| rel.starts_with(p) || p.starts_with(rel));
        on_path && !self.excluded(rel)
    }

    /// Whether `rel` is at or below a requested path (every entry when none was requested), as
    /// opposed to an ancestor walked to reach one. Excludes do not count.
    pub fn requested(&self, rel: &Path) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| rel.starts_with(p))
    }

    /// The total size of the regular files below `root` that take part (for progress and
    /// usage figures); `None` if `stop` was set first. Unreadable directories count as empty.
    pub fn size_below(&self, root: &Path, stop: &AtomicBool) -> Option<u64> {
        let mut total = 0;
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if !self.includes(path.strip_prefix(root).unwrap_or(&path)) {
                    continue;
                }
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(path),
                    Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => {}
                }
            }
        }
        Some(total)
    }

    fn excluded(&self, rel: &Path) -> bool {
        let path = rel.to_string_lossy();
        let name = rel.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        self.exclude.iter().any(|pattern| {
            let pattern = pattern.trim_start_matches('/');
            let subject: &str = if pattern.contains('/') { &path } else { &name };
            glob_match(pattern.as_bytes(), subject.as_bytes())
        })
    }
}

/// Matches `text` against a glob `pattern` (`*`, `?`, `**`).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        [b'*', rest @ ..] => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob_match(rest, &text[i..])),
        [b'?', rest @ ..] => text.first().is_some_and(|&c| c != b'/') && glob_match(rest, &text[1..]),
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_excludes() {
        let s = Selection::new(
            &[PathBuf::from("/etc/app")],
            &["*.log".into(), "etc/app/cache/**".into()],
        );
        assert!(s.includes(Path::new("etc")), "ancestors are walked");
        assert!(s.includes(Path::new("etc/app/config.toml")));
        assert!(!s.includes(Path::new("etc/other")));
        assert!(!s.includes(Path::new("etc/app/debug.log")));
        assert!(!s.includes(Path::new("etc/app/cache/x/y")));
        let all = Selection::new(&[], &["tmp".into(), "a?c".into()]);
        assert!(all.includes(Path::new("var/lib")));
        assert!(!all.includes(Path::new("var/tmp")));
        assert!(!all.includes(Path::new("abc")) && all.includes(Path::new("abbc")));
        assert!(!glob_match(b"*.log", b"dir/x.log") && glob_match(b"**/x.log", b"dir/sub/x.log"));
    }

    #[test]
    fn size_below_counts_the_selected_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/cache")).unwrap();
        std::fs::write(dir.path().join("a/one"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("a/cache/big"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("debug.log"), [0u8; 10]).unwrap();
        std::os::unix::fs::symlink("a/one", dir.path().join("link")).unwrap();
        let go = AtomicBool::new(false);
        assert_eq!(Selection::default().size_below(dir.path(), &go), Some(1110));
        let some = Selection::new(&[], &["*.log".into(), "a/cache".into()]);
        assert_eq!(some.size_below(dir.path(), &go), Some(100));
        assert_eq!(
            Selection::default().size_below(dir.path(), &AtomicBool::new(true)),
            None
        );
    }
}
