//! The HTTP backend's interface: how a storage group served by the repository proxy
//! `hort-store` is reached over HTTP ([`wire`]).

pub mod wire;
