//! `hort-agent`: see `hort_agent::cli`.

fn main() {
    limit_malloc_arenas();
    std::process::exit(hort_agent::cli::main(|cli| {
        if cli.is_backup() {
            map_large_buffers();
        }
    }));
}

/// glibc's malloc gives each thread an arena of its own (up to eight per core), and each arena
/// keeps the buffers its thread allocated after they are freed. A restore's reader and writer
/// threads pass pack data between them, so with one arena each the process held about 20 MiB
/// more than the data in flight; with two arenas shared by all threads its peak was that much
/// lower at the same speed (measured in bench/README.md, "Restore memory").
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a parameter of the allocator, and runs before any other thread
    // exists. A refusal (0) leaves glibc's default, which is correct, only larger.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so after
/// the first chunk buffer above [`REUSE_MAX`](hort_engine::packer::REUSE_MAX) was freed, later
/// ones came from the heaps and much of them stayed resident: a backup of a real directory
/// peaked at 52 to 62 MiB from run to run. With the threshold fixed just above the buffers
/// the pipeline reuses, larger ones are mapped and unmapped: 47 to 49 MiB in six runs, at
/// about the same speed (bench/README.md, "Backup memory"). Restores keep glibc's default:
/// with the fixed threshold they took 1.49 to 1.57 s instead of 1.13 to 1.42 s.
#[allow(unsafe_code)]
fn map_large_buffers() {
    let threshold = i32::try_from(hort_engine::packer::REUSE_MAX + 1).unwrap_or(i32::MAX);
    // SAFETY: as above; the command line is parsed, no other thread exists yet. A refusal
    // leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
    }
}
