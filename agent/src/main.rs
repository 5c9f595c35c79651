//! `hort-agent`: see `hort_agent::cli`.

fn main() {
    std::process::exit(hort_agent::cli::main());
}
