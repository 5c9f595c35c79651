//! Child processes of the database tools: dumps read from their stdout, restores and queries
//! fed through their stdin. A child that exits non-zero or is killed is always an error.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;

use super::DatabaseError;

/// The tool's last messages kept for an error.
const STDERR_TAIL: usize = 4000;

/// How running a tool went wrong.
pub(crate) enum RunError {
    /// It could not be started.
    Start(DatabaseError),
    /// It exited non-zero or was killed: status and its messages.
    Exit(String),
    /// Producing its input failed (reading a stream, or writing to the tool).
    Input(DatabaseError),
}

impl RunError {
    /// Turns the failure into an error; `on_exit` builds the one for a failed tool.
    pub(crate) fn into_error(self, on_exit: impl FnOnce(String) -> DatabaseError) -> DatabaseError {
        match self {
            RunError::Start(e) | RunError::Input(e) => e,
            RunError::Exit(message) => on_exit(message),
        }
    }
}

/// Whether an environment variable of the agent may hold a secret the database tools do not
/// need (the repository password, storage credentials, the agent's own copy of the database
/// password: the tools get theirs from the `Command`).
fn agent_secret(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("HORT_") || name.starts_with("AWS_")
}

fn spawn(cmd: &mut Command, tool: &str) -> Result<Child, DatabaseError> {
    for (name, _) in std::env::vars_os().filter(|(name, _)| agent_secret(name)) {
        cmd.env_remove(name);
    }
    cmd.spawn().map_err(|e| DatabaseError::Tool {
        tool: tool.to_string(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            format!("not found ({e}); install the database client tools or set their directory")
        } else {
            e.to_string()
        },
    })
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

fn failure(tool: &str, status: ExitStatus, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("{tool} {}", describe(status))
    } else {
        format!("{tool} {}: {text}", describe(status))
    }
}

fn read_tail(mut r: impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if all.len() > 4 * STDERR_TAIL {
                    all.drain(..all.len() - STDERR_TAIL);
                }
            }
        }
    }
    if all.len() > STDERR_TAIL {
        all.drain(..all.len() - STDERR_TAIL);
    }
    all
}

/// Writes a tool's stdin.
pub(crate) type Feed<'a> = Box<dyn FnOnce(&mut dyn Write) -> Result<(), DatabaseError> + Send + 'a>;

/// Runs `cmd`, feeding its stdin from `input` (in a second thread) when given, and returns
/// its stdout.
pub(crate) fn run(mut cmd: Command, tool: &str, input: Option<Feed<'_>>) -> Result<Vec<u8>, RunError> {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd, tool).map_err(RunError::Start)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (out, err, fed) = thread::scope(|s| {
        let err = s.spawn(move || stderr.map(read_tail).unwrap_or_default());
        let fed = input.zip(stdin).map(|(feed, mut stdin)| {
            s.spawn(move || {
                let result = feed(&mut stdin);
                drop(stdin);
                result
            })
        });
        let mut out = Vec::new();
        if let Some(mut stdout) = stdout {
            // A read error here shows up as the child's failure below.
            let _ = stdout.read_to_end(&mut out);
        }
        let fed = fed.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(DatabaseError::Query("input thread panicked".into())))
        });
        (out, err.join().unwrap_or_default(), fed)
    });
    let status = child.wait().map_err(|e| RunError::Start(e.into()))?;
    if !status.success() {
        return Err(RunError::Exit(failure(tool, status, &err)));
    }
    match fed {
        Some(Err(e)) => Err(RunError::Input(e)),
        _ => Ok(out),
    }
}

/// The pipe buffer asked for a dump tool's stdout.
const DUMP_PIPE_BYTES: usize = 1 << 20;

/// Runs a dump: `consume` reads the tool's stdout. The dump succeeded only if `consume` did
/// and the tool exited with status 0; a killed or failing tool is [`DatabaseError::DumpFailed`]
/// for `stream`.
pub(crate) fn dump<T>(
    mut cmd: Command,
    tool: &str,
    stream: &str,
    consume: impl FnOnce(&mut ChildStdout) -> Result<T, DatabaseError>,
) -> Result<T, DatabaseError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(&mut cmd, tool)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    // A 1 MiB pipe (Linux's default limit for unprivileged processes; 64 KiB otherwise) lets
    // the dump run on while the agent chunks and hashes what it read. Best effort.
    let _ = rustix::pipe::fcntl_setpipe_size(&stdout, DUMP_PIPE_BYTES);
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || read_tail(stderr));
    let consumed = consume(&mut stdout);
    let mut stopped = false;
    if consumed.is_err() {
        // The tool may have failed first (then its message is the better one); otherwise stop it.
        if !matches!(child.try_wait(), Ok(Some(_))) {
            stopped = child.kill().is_ok();
        }
    }
    drop(stdout);
    let status = child.wait()?;
    let err = stderr_reader.join().unwrap_or_default();
    match consumed {
        Ok(value) if status.success() => Ok(value),
        Err(e) if stopped || status.success() => Err(e),
        Ok(_) | Err(_) => Err(DatabaseError::DumpFailed {
            stream: stream.to_string(),
            reason: failure(tool, status, &err),
        }),
    }
}

/// Copies `from` into the tool's stdin, mapping read errors to [`DatabaseError::Source`].
pub(crate) fn copy_stream(from: &mut dyn Read, to: &mut dyn Write, stream: &str) -> Result<(), DatabaseError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DatabaseError::Source {
                    stream: stream.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        to.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_secrets_are_not_passed_to_the_tools() {
        for name in [
            "HORT_PASSWORD",
            "HORT_DB_PASSWORD",
            "HORT_TARGET_0_AWS_SECRET_ACCESS_KEY",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(agent_secret(name.as_ref()), "{name}");
        }
        for name in ["PGPASSWORD", "MYSQL_PWD", "PATH", "LANG"] {
            assert!(!agent_secret(name.as_ref()), "{name}");
        }
    }
}
