//! `hort-operator`: reconciles Hort's custom resources into agent pods.

fn main() {}
