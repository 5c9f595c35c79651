//! Hort's agent: the `hort-agent` command line ([`cli`]) over the repository engine
//! (`hort-engine`), the database dumps and restores it runs ([`database`]), and the progress
//! it prints ([`progress`]).

pub mod cli;
pub mod database;
pub mod progress;
