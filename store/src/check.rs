//! The proxy's checks, without any I/O: which namespace a request belongs to, which file it
//! names inside that namespace's place (`tenants/<namespace>/`), and whether a write may
//! store its bytes there. Names must be what the format names files by (64 hex digits, or
//! `config`), so no request can leave its namespace's prefix; a content-addressed file is
//! stored only under the hash of its bytes (FORMAT.md §2, checked without any key), and
//! `config` never: a namespace's repository is created by Hort's operator, directly at the
//! targets, so proxy replicas never race to create one.

use hort_engine::backend::FileKind;
use hort_engine::backend::http::wire;
use hort_engine::id::Id;

pub use hort_protocol::tenant::Namespace;

/// Length of the names of content-addressed files (hex digits of an [`Id`]).
const ID_HEX_DIGITS: usize = 64;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefusalKind {
    /// The kind is not one of the format's file kinds served to tenants.
    #[error("not a file kind tenants may reach")]
    UnknownKind,
    /// The name is not what the format names a file of this kind by.
    #[error("not a file name of this kind (64 lowercase hex digits, or `config` for the config file)")]
    BadName,
    /// The bytes written do not hash to the name.
    #[error("the BLAKE3 hash of the bytes is not the name")]
    ContentMismatch,
    /// A write of `config`.
    #[error(
        "the repository's config is never written through hort-store: Hort's operator creates the namespace's repository (see the ClusterStorageGroup's status.tenants[].repositoryId)"
    )]
    ConfigWrite,
    /// A delete of `config`.
    #[error("the repository's config is never deleted through hort-store")]
    ConfigDelete,
}

/// A refused request, naming the namespace, kind and name it was for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("namespace {namespace}: {file_kind} `{name}`: {kind}")]
pub struct Refusal {
    /// The asking namespace.
    pub namespace: String,
    /// The kind as requested.
    pub file_kind: String,
    /// The name as requested.
    pub name: String,
    /// Why.
    pub kind: RefusalKind,
}

impl Refusal {
    /// Why the request was refused.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }
}

/// A file inside one namespace's place: its kind and a name that cannot leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The namespace.
    pub namespace: Namespace,
    /// The kind.
    pub kind: FileKind,
    /// The name (`config`, or 64 lowercase hex digits).
    pub name: String,
}

/// The kind a request's `segment` names, if tenants may reach it. Probes (written by `check`
/// to test a target) are not served: targets are checked by Hort, directly.
pub fn resolve_kind(namespace: &Namespace, segment: &str) -> Result<FileKind, Refusal> {
    match wire::parse_kind(segment) {
        Some(kind) if kind != FileKind::Probe => Ok(kind),
        _ => Err(refusal(namespace, segment, "", RefusalKind::UnknownKind)),
    }
}

/// The file a request for `segment`/`name` names in `namespace`'s place.
pub fn resolve(namespace: &Namespace, segment: &str, name: &str) -> Result<FileRef, Refusal> {
    let kind = resolve_kind(namespace, segment).map_err(|r| Refusal { name: name.into(), ..r })?;
    let valid = match kind {
        FileKind::Config => name == "config",
        _ => name.len() == ID_HEX_DIGITS && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
    };
    if !valid {
        return Err(refusal(namespace, segment, name, RefusalKind::BadName));
    }
    Ok(FileRef {
        namespace: namespace.clone(),
        kind,
        name: name.to_owned(),
    })
}

fn refusal(namespace: &Namespace, segment: &str, name: &str, kind: RefusalKind) -> Refusal {
    Refusal {
        namespace: namespace.to_string(),
        file_kind: segment.to_owned(),
        name: name.to_owned(),
        kind,
    }
}

impl FileRef {
    /// The file's path relative to the group's targets (for logs).
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace.prefix(), self.kind.path(&self.name))
    }

    fn refused(&self, kind: RefusalKind) -> Refusal {
        refusal(&self.namespace, wire::kind_segment(self.kind), &self.name, kind)
    }

    /// Refuses a write of `config` (before its bytes arrive); accepts any other file.
    pub fn check_write(&self) -> Result<(), Refusal> {
        match self.kind {
            FileKind::Config => Err(self.refused(RefusalKind::ConfigWrite)),
            _ => Ok(()),
        }
    }

    /// Accepts a write of bytes whose [`Id::of_file`] is `id` (computed by the caller as the
    /// bytes arrive) only if it is the name (`config` is refused by [`FileRef::check_write`]).
    pub fn check_content(&self, id: Id) -> Result<(), Refusal> {
        if id.to_hex() == self.name {
            Ok(())
        } else {
            Err(self.refused(RefusalKind::ContentMismatch))
        }
    }

    /// Accepts a delete of anything but `config` (forget and prune delete files; the config
    /// stays as long as the repository).
    pub fn check_delete(&self) -> Result<(), Refusal> {
        match self.kind {
            FileKind::Config => Err(self.refused(RefusalKind::ConfigDelete)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::parse(name).unwrap()
    }

    #[test]
    fn a_name_resolves_inside_the_asking_namespace_only() {
        let pack = Id::of_file(b"pack of team-a").to_hex();
        let a = resolve(&ns("team-a"), "pack", &pack).unwrap();
        let b = resolve(&ns("team-b"), "pack", &pack).unwrap();
        assert_eq!(a.path(), format!("tenants/team-a/data/{}/{pack}", &pack[..2]));
        assert!(b.path().starts_with("tenants/team-b/"), "{}", b.path());
        // Nothing in a name can point at another namespace's files.
        for name in [
            format!("../team-a/{pack}"),
            format!("../../tenants/team-a/data/{}/{pack}", &pack[..2]),
            "..".into(),
        ] {
            let refused = resolve(&ns("team-b"), "pack", &name).unwrap_err();
            assert_eq!(refused.kind(), RefusalKind::BadName, "{name}");
        }
    }

    #[test]
    fn names_must_be_ids_of_the_format_length_or_config() {
        let id = Id::of_file(b"x").to_hex();
        let team = ns("team-a");
        let refused = |kind: &str, name: &str| resolve(&team, kind, name).unwrap_err().kind();
        assert_eq!(refused("index", ".."), RefusalKind::BadName);
        assert_eq!(
            refused("index", &format!("{}/x", &id[..62])),
            RefusalKind::BadName,
            "a slash"
        );
        assert_eq!(
            refused("index", &format!("{}zz", &id[..62])),
            RefusalKind::BadName,
            "non-hex"
        );
        assert_eq!(refused("index", &id.to_uppercase()), RefusalKind::BadName, "upper case");
        assert_eq!(refused("index", &id[..63]), RefusalKind::BadName, "too short");
        assert_eq!(refused("index", &format!("{id}0")), RefusalKind::BadName, "too long");
        assert_eq!(refused("key", "config"), RefusalKind::BadName);
        assert_eq!(refused("config", &id), RefusalKind::BadName);
        assert_eq!(refused("config", "../config"), RefusalKind::BadName);
        for kind in ["key", "pack", "tree-pack", "index", "snapshot", "prune", "lock"] {
            assert!(resolve(&team, kind, &id).is_ok(), "{kind}");
        }
        assert!(resolve(&team, "config", "config").is_ok());
    }

    #[test]
    fn unknown_kinds_and_probes_are_refused() {
        let id = Id::of_file(b"x").to_hex();
        for kind in ["probe", "data", "..", "Pack", ""] {
            let refused = resolve(&ns("team-a"), kind, &id).unwrap_err();
            assert_eq!(refused.kind(), RefusalKind::UnknownKind, "{kind}");
            assert!(resolve_kind(&ns("team-a"), kind).is_err());
        }
    }

    #[test]
    fn a_file_is_written_only_under_the_hash_of_its_bytes() {
        let bytes = b"sealed index".as_slice();
        let name = Id::of_file(bytes).to_hex();
        let file = resolve(&ns("team-a"), "index", &name).unwrap();
        assert!(file.check_content(Id::of_file(bytes)).is_ok());
        let refused = file.check_content(Id::of_file(b"other bytes")).unwrap_err();
        assert_eq!(refused.kind(), RefusalKind::ContentMismatch);
        let message = refused.to_string();
        assert!(
            message.contains("team-a") && message.contains("index") && message.contains(&name),
            "{message}"
        );
    }

    #[test]
    fn config_is_neither_written_nor_deleted_through_the_proxy() {
        let config = resolve(&ns("team-a"), "config", "config").unwrap();
        let refused = config.check_write().unwrap_err();
        assert_eq!(refused.kind(), RefusalKind::ConfigWrite);
        let message = refused.to_string();
        assert!(
            message.contains("namespace team-a: config `config`") && message.contains("operator creates"),
            "{message}"
        );
        assert_eq!(config.check_delete().unwrap_err().kind(), RefusalKind::ConfigDelete);
        let id = Id::of_file(b"x").to_hex();
        let snapshot = resolve(&ns("team-a"), "snapshot", &id).unwrap();
        assert!(snapshot.check_write().is_ok() && snapshot.check_delete().is_ok());
    }
}
