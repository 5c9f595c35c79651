//! `hort-store`, the repository proxy of a storage group shared by many namespaces
//! (`docs/design/shared-storage.md`). It holds the storage credentials; a tenant's agent pod
//! shows its ServiceAccount token and reaches only its own namespace's repository, under
//! `tenants/<namespace>/` of every target.
//!
//! - [`check`]: which file a request names in the asking namespace's place, and whether its
//!   bytes may be stored (pure code);
//! - [`auth`]: from a bearer token to a namespace ([`auth::Authenticator`]); [`review`]: the
//!   API server's TokenReview, remembered for a while;
//! - [`admission`]: whether a namespace may use a group (`allowedNamespaces` of its
//!   `ClusterStorageGroup`, matched by [`selector`]);
//! - [`places`]: each namespace's place on the group's targets, as an engine backend;
//! - [`server`] (with [`api_error`]): the HTTP interface the engine's `hort+https://` backend
//!   speaks; [`tls`]: HTTPS from a certificate and key file.

pub mod admission;
pub mod api_error;
pub mod auth;
pub mod check;
pub mod places;
pub mod review;
pub mod selector;
pub mod server;
pub mod tls;
