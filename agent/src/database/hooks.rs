//! Pre and post hooks: commands run around a dump (e.g. pause a job queue, flush an
//! application cache), each with an `onError` policy.
//!
//! Post hooks run whenever a pre hook ran, also after a failed pre hook or dump, so a hook
//! that pauses something is always undone. A failing hook with [`OnError::Fail`] fails the
//! backup (a failing pre hook skips the dump); with [`OnError::Continue`] it is reported in
//! [`Hooked::warnings`]. Errors name the hook by its position and program, not its arguments
//! (which may hold secrets).

use std::process::Command;

use super::DatabaseError;
use super::process;

/// What a failing hook does to the backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// The backup fails.
    #[default]
    Fail,
    /// The failure is reported and the backup goes on.
    Continue,
}

/// A command run before or after the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Policy on failure.
    pub on_error: OnError,
}

/// A result with the failures of hooks whose policy was [`OnError::Continue`].
#[derive(Debug)]
pub struct Hooked<T> {
    /// What the dump returned.
    pub value: T,
    /// One message per tolerated hook failure.
    pub warnings: Vec<String>,
}

fn run_hook(stage: &str, index: usize, hook: &Hook) -> Result<(), DatabaseError> {
    let name = format!(
        "{stage} hook #{} ({})",
        index + 1,
        hook.command.first().map(String::as_str).unwrap_or("")
    );
    let Some((program, args)) = hook.command.split_first() else {
        return Err(DatabaseError::Hook {
            hook: name,
            reason: "empty command".into(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    process::run(cmd, program, None)
        .map(drop)
        .map_err(|e| {
            e.into_error(|reason| DatabaseError::Hook {
                hook: name.clone(),
                reason,
            })
        })
        .map_err(|e| match e {
            DatabaseError::Hook { .. } => e,
            other => DatabaseError::Hook {
                hook: name,
                reason: other.to_string(),
            },
        })
}

/// Runs `pre` hooks, then `dump`, then `post` hooks (see the module documentation).
pub fn with_hooks<T>(
    pre: &[Hook],
    post: &[Hook],
    dump: impl FnOnce() -> Result<T, DatabaseError>,
) -> Result<Hooked<T>, DatabaseError> {
    let mut warnings = Vec::new();
    let mut failed: Option<DatabaseError> = None;
    for (i, hook) in pre.iter().enumerate() {
        match run_hook("pre", i, hook) {
            Ok(()) => {}
            Err(e) if hook.on_error == OnError::Continue => warnings.push(e.to_string()),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let value = match failed {
        None => match dump() {
            Ok(v) => Some(v),
            Err(e) => {
                failed = Some(e);
                None
            }
        },
        Some(_) => None,
    };
    for (i, hook) in post.iter().enumerate() {
        match run_hook("post", i, hook) {
            Ok(()) => {}
            Err(e) if hook.on_error == OnError::Continue || failed.is_some() => warnings.push(e.to_string()),
            Err(e) => failed = Some(e),
        }
    }
    match (failed, value) {
        (None, Some(value)) => Ok(Hooked { value, warnings }),
        (Some(e), _) => Err(e),
        (None, None) => unreachable!("no value without an error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn hook(command: &[&str], on_error: OnError) -> Hook {
        Hook {
            command: command.iter().map(|s| s.to_string()).collect(),
            on_error,
        }
    }

    #[test]
    fn hooks_run_around_the_dump() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("post-ran");
        let post = [hook(&["touch", marker.to_str().unwrap()], OnError::Fail)];
        let out = with_hooks(&[hook(&["true"], OnError::Fail)], &post, || Ok(7)).unwrap();
        assert_eq!((out.value, out.warnings.len()), (7, 0));
        assert!(marker.exists());
    }

    #[test]
    fn a_failing_pre_hook_skips_the_dump_but_not_the_post_hooks() {
        let dumped = Cell::new(false);
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("post-ran");
        let post = [hook(&["touch", marker.to_str().unwrap()], OnError::Fail)];
        let err = with_hooks(
            &[hook(&["sh", "-c", "echo no >&2; exit 3"], OnError::Fail)],
            &post,
            || {
                dumped.set(true);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "pre hook #1 (sh) failed: sh exited with status 3: no");
        assert!(!dumped.get());
        assert!(marker.exists(), "post hooks undo what pre hooks did");
    }

    #[test]
    fn continue_turns_failures_into_warnings() {
        let out = with_hooks(
            &[hook(&["false"], OnError::Continue)],
            &[hook(&["/nonexistent/hook"], OnError::Continue)],
            || Ok(1),
        )
        .unwrap();
        assert_eq!(out.warnings.len(), 2);
        assert!(
            out.warnings[1].contains("post hook #1 (/nonexistent/hook)"),
            "{:?}",
            out.warnings
        );
        let err = with_hooks(&[], &[hook(&["false"], OnError::Fail)], || Ok(1)).unwrap_err();
        assert!(err.to_string().starts_with("post hook #1 (false) failed"), "{err}");
    }
}
