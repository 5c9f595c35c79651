//! The blobs of an index too large to keep in memory: one file of [`Record`]s sorted by id,
//! in the spool directory, read a block at a time. Only the first id of every block stays in
//! memory (32 bytes per [`BLOCK`] blobs: 10 MiB for 20 million blobs), so a lookup costs one
//! binary search in memory and one read of [`BLOCK`] records, which the page cache usually
//! answers.
//!
//! The file is made by an external merge sort: records arrive in the order the index files
//! list them, are sorted in runs of bounded size, written to temporary files and merged.
//! When a blob is listed more than once, the first listing wins, as in the in-memory index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use crate::id::Id;

/// Records per block: the unit of a lookup's read, and of the ids kept in memory.
pub const BLOCK: usize = 64;
/// Bytes each run file and the output are read and written through.
const IO_BUFFER: usize = 64 * 1024;

/// The sorted blob records of an index, in an unlinked temporary file.
#[derive(Debug)]
pub struct SortedBlobs {
    file: File,
    /// The id of the first record of every block.
    fences: Vec<Id>,
    count: u64,
}

impl SortedBlobs {
    /// The record of `id`, if the file holds it.
    pub fn get(&self, id: &Id) -> std::io::Result<Option<Record>> {
        let block = match self.fences.partition_point(|first| first <= id) {
            0 => return Ok(None),
            after => after - 1,
        };
        let first = block * BLOCK;
        let records = usize::try_from(self.count).expect("the file fits the address space") - first;
        let records = records.min(BLOCK);
        let mut buffer = [0u8; BLOCK * record::SIZE];
        let bytes = &mut buffer[..records * record::SIZE];
        self.file.read_exact_at(bytes, (first * record::SIZE) as u64)?;
        let (mut low, mut high) = (0, records);
        while low < high {
            let middle = (low + high) / 2;
            let at = &bytes[middle * record::SIZE..(middle + 1) * record::SIZE];
            match Record::id_of(at).cmp(id) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => {
                    return Ok(Some(Record::decode(at.try_into().expect("one record"))));
                }
            }
        }
        Ok(None)
    }

    /// Number of distinct blobs.
    pub fn blobs(&self) -> u64 {
        self.count
    }

    /// Every record in id order; a read error ends the iteration with that error.
    pub fn iter(&self) -> impl Iterator<Item = std::io::Result<Record>> + '_ {
        let mut buffer = vec![0u8; BLOCK * record::SIZE];
        (0..self.count.div_ceil(BLOCK as u64)).flat_map(move |block| {
            let first = block * BLOCK as u64;
            let records = (self.count - first).min(BLOCK as u64) as usize;
            let bytes = &mut buffer[..records * record::SIZE];
            let read = self.file.read_exact_at(bytes, first * record::SIZE as u64);
            let out: Vec<std::io::Result<Record>> = match read {
                Ok(()) => bytes
                    .chunks_exact(record::SIZE)
                    .map(|r| Ok(Record::decode(r.try_into().expect("one record"))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            out
        })
    }
}

/// Sorts records into a [`SortedBlobs`] with at most `run_records` of them in memory.
pub struct Sorter {
    dir: PathBuf,
    run_records: usize,
    buffer: Vec<Record>,
    runs: Vec<File>,
}

impl Sorter {
    /// A sorter whose temporary files go to `dir`.
    pub fn new(dir: &Path, run_records: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            run_records: run_records.max(1),
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a record (sorting and writing a run when the buffer is full).
    pub fn push(&mut self, record: Record) -> std::io::Result<()> {
        self.buffer.push(record);
        if self.buffer.len() >= self.run_records {
            self.spill()?;
        }
        Ok(())
    }

    /// Whether no run has been written yet: every record is still in memory.
    pub fn in_memory(&self) -> bool {
        self.runs.is_empty()
    }

    /// The records held in memory, in the order they were pushed (only while
    /// [`Sorter::in_memory`]).
    pub fn into_buffer(self) -> Vec<Record> {
        self.buffer
    }

    /// Sorts the buffer by id (first listing first), drops later listings of an id and
    /// writes it as a run.
    fn spill(&mut self) -> std::io::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.sort_by_key(|r| r.entry.id);
        buffer.dedup_by_key(|r| r.entry.id);
        let mut out = BufWriter::with_capacity(IO_BUFFER, tempfile::tempfile_in(&self.dir)?);
        for record in &buffer {
            out.write_all(&record.encode())?;
        }
        let mut file = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        self.buffer = buffer;
        self.buffer.clear();
        Ok(())
    }

    /// Merges the runs into one sorted file; of an id in several runs the earliest run's
    /// record is kept.
    pub fn finish(mut self) -> std::io::Result<SortedBlobs> {
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        drop(std::mem::take(&mut self.buffer));
        let mut readers: Vec<BufReader<File>> = self
            .runs
            .drain(..)
            .map(|f| BufReader::with_capacity(IO_BUFFER, f))
            .collect();
        let mut current = vec![[0u8; record::SIZE]; readers.len()];
        let mut heap = BinaryHeap::new();
        for (run, reader) in readers.iter_mut().enumerate() {
            if next(reader, &mut current[run])? {
                heap.push(Reverse((Record::id_of(&current[run]), run)));
            }
        }
        let mut out = BufWriter::with_capacity(IO_BUFFER, tempfile::tempfile_in(&self.dir)?);
        let (mut fences, mut count, mut last) = (Vec::new(), 0u64, None);
        while let Some(Reverse((id, run))) = heap.pop() {
            if last != Some(id) {
                if count % BLOCK as u64 == 0 {
                    fences.push(id);
                }
                out.write_all(&current[run])?;
                count += 1;
                last = Some(id);
            }
            if next(&mut readers[run], &mut current[run])? {
                heap.push(Reverse((Record::id_of(&current[run]), run)));
            }
        }
        let file = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        fences.shrink_to_fit();
        Ok(SortedBlobs { file, fences, count })
    }
}

/// Reads the next record of a run; false at its end.
fn next(reader: &mut impl Read, into: &mut [u8; record::SIZE]) -> std::io::Result<bool> {
    match reader.read_exact(into) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobEntry, BlobKind};

    fn record(id: u32, pack: u32) -> Record {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&id.to_be_bytes());
        bytes[31] = 1;
        Record {
            entry: BlobEntry {
                id: Id(*blake3::hash(&bytes).as_bytes()),
                kind: BlobKind::Data,
                offset: u64::from(id) * 10,
                length: id,
                raw_length: id + 1,
            },
            pack,
            condemned: false,
        }
    }

    #[test]
    fn runs_merge_into_one_sorted_file_where_the_first_listing_wins() {
        let dir = tempfile::tempdir().unwrap();
        // 1,000 blobs in runs of 7 records; blobs 0..100 are listed again from pack 2.
        let mut sorter = Sorter::new(dir.path(), 7);
        for id in 0..1000 {
            sorter.push(record(id, 1)).unwrap();
        }
        for id in 0..100 {
            sorter.push(record(id, 2)).unwrap();
        }
        assert!(!sorter.in_memory());
        let sorted = sorter.finish().unwrap();
        assert_eq!(sorted.blobs(), 1000);
        for id in 0..1000 {
            let want = record(id, 1);
            assert_eq!(sorted.get(&want.entry.id).unwrap(), Some(want), "blob {id}");
        }
        assert_eq!(sorted.get(&Id([0; 32])).unwrap(), None, "below the first id");
        assert_eq!(sorted.get(&Id([0xff; 32])).unwrap(), None, "above the last id");
        assert_eq!(sorted.get(&record(5000, 1).entry.id).unwrap(), None, "between ids");
        let all: Vec<Record> = sorted.iter().map(Result::unwrap).collect();
        assert_eq!(all.len(), 1000);
        assert!(all.windows(2).all(|w| w[0].entry.id < w[1].entry.id), "in id order");
        assert!(all.iter().all(|r| r.pack == 1), "later listings lose");
        assert_eq!(sorted.fences.len(), 1000usize.div_ceil(BLOCK));
    }

    #[test]
    fn the_temporary_files_are_gone_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::new(dir.path(), 3);
        for id in 0..10 {
            sorter.push(record(id, 0)).unwrap();
        }
        let sorted = sorter.finish().unwrap();
        assert_eq!(sorted.blobs(), 10);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "unlinked files only");
    }
}
