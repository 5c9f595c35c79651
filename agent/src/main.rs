//! `hort-agent`: see `hort_agent::cli`.

fn main() {
    limit_malloc_arenas();
    std::process::exit(hort_agent::cli::main());
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
