//! Compares the RBAC rules of Hort's chart with the API requests the operator made, as the
//! kube-apiserver's audit log records them during `kind-tests/e2e.sh`: every verb the chart
//! grants must have been used (or be on the [`allowlist`] with its reason), and no request may
//! have been forbidden.

pub mod allowlist;
pub mod audit;
pub mod rbac;
pub mod report;
