//! Tree blobs (directory listings): JSON and the entry-name checks that keep a restore
//! inside its target.
#![no_main]

use std::os::unix::ffi::OsStrExt;

use hort_engine::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::parse(data) {
        for node in &tree.nodes {
            let name = node.os_name();
            assert!(!name.as_bytes().contains(&b'/') && name != ".." && !name.is_empty());
            let _ = node.os_target();
            let _ = tree.find(&name);
        }
    }
});
