//! Path selection for backups and restores: chosen sub-paths, and exclude patterns with the
//! semantics of `.gitignore` files (the `ignore` crate's matcher, as ripgrep uses it):
//!
//! - a pattern without a `/` (other than a trailing one) matches a name at any depth:
//!   `*.log`, `cache/`, `node_modules`;
//! - a trailing `/` matches directories only (and so everything below them): `cache/`;
//! - a pattern with a `/` at its start or in its middle is anchored at the root (the volume or
//!   the restored snapshot): `/tmp`, `data/cache`;
//! - `*` and `?` match within a name, `**` any number of directories: `**/*.tmp`, `logs/**`;
//! - `!pattern` includes again what an earlier pattern left out.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Which entries below a root take part.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Only these relative paths and what lies below them (plus their ancestors); all if empty.
    paths: Vec<PathBuf>,
    /// The exclude patterns, compiled.
    exclude: Gitignore,
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            exclude: Gitignore::empty(),
        }
    }
}

/// An exclude pattern that is not a valid glob.
#[derive(Debug, thiserror::Error)]
#[error("exclude pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Selection {
    /// A selection of `paths` (normalized to relative paths) without the entries matching
    /// `exclude` (see the module documentation for the pattern rules).
    pub fn new(paths: &[PathBuf], exclude: &[String]) -> Result<Self, PatternError> {
        let paths = paths
            .iter()
            .map(|p| p.components().filter(|c| matches!(c, Component::Normal(_))).collect())
            .collect();
        let mut builder = GitignoreBuilder::new("");
        for pattern in exclude {
            builder.add_line(None, pattern).map_err(|e| PatternError {
                pattern: pattern.clone(),
                reason: e.to_string(),
            })?;
        }
        let exclude = builder.build().map_err(|e| PatternError {
            pattern: exclude.join(" "),
            reason: e.to_string(),
        })?;
        Ok(Self { paths, exclude })
    }

    /// Whether the entry at `rel` (relative to the root), a directory or not, takes part.
    pub fn includes(&self, rel: &Path, is_dir: bool) -> bool {
        let on_path = self.paths.is_empty() || self.paths.iter().any(|p| rel.starts_with(p) || p.starts_with(rel));
        on_path && !self.exclude.matched_path_or_any_parents(rel, is_dir).is_ignore()
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
                let Ok(kind) = entry.file_type() else { continue };
                if !self.includes(path.strip_prefix(root).unwrap_or(&path), kind.is_dir()) {
                    continue;
                }
                if kind.is_dir() {
                    dirs.push(path);
                } else if kind.is_file() {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluding(patterns: &[&str]) -> Selection {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Selection::new(&[], &patterns).unwrap()
    }

    #[test]
    fn paths_select_what_lies_below_them_and_their_ancestors() {
        let s = Selection::new(&[PathBuf::from("/etc/app")], &[]).unwrap();
        assert!(s.includes(Path::new("etc"), true), "ancestors are walked");
        assert!(s.includes(Path::new("etc/app/config.toml"), false));
        assert!(!s.includes(Path::new("etc/other"), false));
        assert!(s.requested(Path::new("etc/app/x")) && !s.requested(Path::new("etc")));
    }

    #[test]
    fn a_trailing_slash_matches_directories_at_any_depth() {
        let s = excluding(&["cache/"]);
        assert!(!s.includes(Path::new("cache"), true));
        assert!(!s.includes(Path::new("app/cache"), true));
        assert!(
            !s.includes(Path::new("app/cache/blob"), false),
            "below an excluded directory"
        );
        assert!(
            s.includes(Path::new("cache"), false),
            "a file named cache is not a directory"
        );
    }

    #[test]
    fn a_pattern_without_a_slash_matches_names_at_any_depth() {
        let s = excluding(&["*.log", "tmp", "a?c"]);
        assert!(!s.includes(Path::new("debug.log"), false));
        assert!(!s.includes(Path::new("var/app/debug.log"), false));
        assert!(!s.includes(Path::new("var/tmp"), true));
        assert!(!s.includes(Path::new("abc"), false) && s.includes(Path::new("abbc"), false));
        assert!(s.includes(Path::new("var/lib"), true));
    }

    #[test]
    fn a_slash_anchors_at_the_root_and_double_star_spans_directories() {
        let s = excluding(&["/tmp", "data/cache", "**/*.tmp", "logs/**"]);
        assert!(!s.includes(Path::new("tmp"), true));
        assert!(s.includes(Path::new("var/tmp"), true), "anchored at the root");
        assert!(!s.includes(Path::new("data/cache"), true));
        assert!(s.includes(Path::new("other/data/cache"), true), "anchored at the root");
        assert!(!s.includes(Path::new("x.tmp"), false));
        assert!(!s.includes(Path::new("a/b/c/x.tmp"), false));
        assert!(!s.includes(Path::new("logs/2026/01/app.txt"), false));
        assert!(
            s.includes(Path::new("logs"), true),
            "logs/** matches what is inside logs"
        );
    }

    #[test]
    fn a_negated_pattern_includes_again() {
        let s = excluding(&["*.log", "!keep.log"]);
        assert!(!s.includes(Path::new("a/debug.log"), false));
        assert!(s.includes(Path::new("a/keep.log"), false));
    }

    #[test]
    fn deep_double_stars_stay_fast() {
        // Patterns with many `**` must not take exponential time on deep paths.
        let s = excluding(&["**/a/**/a/**/a/**/a/**/a/**/b"]);
        let deep: PathBuf = std::iter::repeat_n("a", 40).collect();
        assert!(s.includes(&deep, false));
    }

    #[test]
    fn invalid_patterns_are_named() {
        let err = Selection::new(&[], &["ok".into(), "[z-a]".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`[z-a]`"), "{err}");
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
        assert_eq!(excluding(&["*.log", "cache/"]).size_below(dir.path(), &go), Some(100));
        assert_eq!(
            Selection::default().size_below(dir.path(), &AtomicBool::new(true)),
            None
        );
    }
}
