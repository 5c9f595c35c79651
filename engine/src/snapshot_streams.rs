//! The streams of a snapshot as a [`StreamSource`] for database restores: each
//! [`StreamSource::open`] starts a thread that runs [`restorer::restore_stream`] into a bounded
//! channel, and the returned reader takes the data from there. A stream that cannot be read
//! completely ends in an error, never in a silent end of data.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::id::Id;
use crate::progress::Counters;
use crate::repository::IndexedRepository;
use crate::restorer;
use crate::snapshot::Snapshot;
use crate::streams::StreamSource;

/// Chunks buffered between the restoring thread and the reader.
const QUEUE: usize = 4;

/// The streams of one snapshot, readable concurrently.
pub struct SnapshotStreams {
    repo: Arc<IndexedRepository>,
    snapshot: Arc<Snapshot>,
    id: Id,
    counters: Arc<Counters>,
    opened: AtomicU64,
}

impl SnapshotStreams {
    /// Serves the streams of `snapshot` (id `id`); restored bytes are added to `counters`.
    pub fn new(repo: Arc<IndexedRepository>, snapshot: Snapshot, id: Id, counters: Arc<Counters>) -> Self {
        SnapshotStreams {
            repo,
            snapshot: Arc::new(snapshot),
            id,
            counters,
            opened: AtomicU64::new(0),
        }
    }

    /// How many times a stream was opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

enum Message {
    Data(Vec<u8>),
    Done,
    Failed(String),
}

struct ChannelWriter(SyncSender<Message>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Message::Data(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader of the stream went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChannelReader {
    name: String,
    rx: Receiver<Message>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Message::Data(data)) => {
                    self.buf = data;
                    self.pos = 0;
                }
                Ok(Message::Done) => self.done = true,
                Ok(Message::Failed(reason)) => return Err(io::Error::other(reason)),
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "stream `{}`: the restoring thread stopped before the end",
                        self.name
                    )));
                }
            }
        }
    }
}

impl StreamSource for SnapshotStreams {
    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        if !self.snapshot.streams.iter().any(|s| s.name == name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("snapshot {} has no stream `{name}`", self.id.short()),
            ));
        }
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(QUEUE);
        let (repo, snapshot, id, counters) = (self.repo.clone(), self.snapshot.clone(), self.id, self.counters.clone());
        let stream = name.to_owned();
        std::thread::Builder::new().name("hort-stream".into()).spawn(move || {
            let mut out = ChannelWriter(tx);
            let message = match restorer::restore_stream(&repo, &snapshot, &id, &stream, &mut out, &counters) {
                Ok(_) => Message::Done,
                Err(e) => Message::Failed(e.to_string()),
            };
            // The reader may have stopped early (it needed only the start); that is fine.
            let _ = out.0.send(message);
        })?;
        Ok(Box::new(ChannelReader {
            name: name.to_owned(),
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(messages: Vec<Message>) -> ChannelReader {
        let (tx, rx) = sync_channel(messages.len());
        for m in messages {
            tx.send(m).unwrap();
        }
        ChannelReader {
            name: "s".into(),
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    #[test]
    fn data_then_end() {
        let mut text = String::new();
        reader(vec![
            Message::Data(b"ab".to_vec()),
            Message::Data(b"c".to_vec()),
            Message::Done,
        ])
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "abc");
    }

    #[test]
    fn failures_and_lost_writers_are_errors_not_ends() {
        let e = reader(vec![
            Message::Data(b"ab".to_vec()),
            Message::Failed("pack missing".into()),
        ])
        .read_to_end(&mut Vec::new())
        .unwrap_err();
        assert_eq!(e.to_string(), "pack missing");
        let e = reader(vec![Message::Data(b"ab".to_vec())])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("before the end"), "{e}");
    }
}
