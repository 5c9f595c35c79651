//! `hort-store`, the repository proxy of a storage group shared by many namespaces
//! (`docs/design/shared-storage.md`). It holds the storage credentials; a tenant's agent pod
//! shows its ServiceAccount token and reaches only its own namespace's repository, under
//! `tenants/<namespace>/` of every target.
//!
//! - [`check`]: which file a request names in the asking namespace's place, and whether its
//!   bytes may be stored (pure code).

pub mod check;
