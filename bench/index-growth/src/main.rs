//! `hort-index-growth REPOSITORY BLOBS`: adds index files listing BLOBS synthetic blobs
//! (random ids, 256 to a pack of a name no pack has, 16,384 to an index file, as the packer
//! writes them) to the directory repository REPOSITORY, opened with `HORT_PASSWORD`. The
//! packs do not exist: only opening the repository and looking blobs up are measured.

use std::sync::Arc;

use hort_engine::backend::FileKind;
use hort_engine::backend::local::LocalBackend;
use hort_engine::id::Id;
use hort_engine::index::{self, IndexFile, IndexPack};
use hort_engine::pack::{BlobEntry, BlobKind};
use hort_engine::repository::Repository;

/// Blobs listed for each synthetic pack.
const BLOBS_PER_PACK: u64 = 256;
/// Packs listed in each index file (16,384 blobs, the packer's [`hort_engine::packer::INDEX_BLOBS`]).
const PACKS_PER_FILE: u64 = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, blobs] = args.as_slice() else {
        eprintln!("usage: hort-index-growth REPOSITORY BLOBS (password in HORT_PASSWORD)");
        std::process::exit(2);
    };
    let blobs: u64 = blobs.parse().expect("BLOBS is a number");
    let password = std::env::var("HORT_PASSWORD").expect("HORT_PASSWORD is set");
    let repo = Repository::open(Arc::new(LocalBackend::new(path)), password.as_bytes()).expect("open the repository");
    // A seed of its own per run, so that runs add blobs no earlier run added.
    let seed = blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    let id = |what: &str, n: u64| {
        let mut hasher = blake3::Hasher::new_keyed(seed.as_bytes());
        hasher.update(what.as_bytes());
        hasher.update(&n.to_le_bytes());
        Id(*hasher.finalize().as_bytes())
    };
    let packs = blobs.div_ceil(BLOBS_PER_PACK);
    let mut written = 0u64;
    for first in (0..packs).step_by(PACKS_PER_FILE as usize) {
        let file = IndexFile {
            version: 1,
            packs: (first..(first + PACKS_PER_FILE).min(packs))
                .map(|pack| IndexPack {
                    id: id("pack", pack),
                    blobs: (0..BLOBS_PER_PACK.min(blobs - pack * BLOBS_PER_PACK))
                        .map(|b| BlobEntry {
                            id: id("blob", pack * BLOBS_PER_PACK + b),
                            kind: BlobKind::Data,
                            offset: b * 65_600,
                            length: 65_600,
                            raw_length: 65_536,
                        })
                        .collect(),
                })
                .collect(),
        };
        written += file.packs.iter().map(|p| p.blobs.len() as u64).sum::<u64>();
        repo.write_sealed(FileKind::Index, index::AAD, &file)
            .expect("write an index file");
    }
    println!("{written} synthetic blobs in {packs} packs added to {path}");
}
