//! `hort-operator`: kube-runtime controllers that reconcile Hort's custom resources
//! (`StorageGroup`, `BackupJob`, `Schedule`, `RestoreRequest`, `Verification`, and in
//! whole-cluster mode `ClusterStorageGroup`) into agent pods.

pub mod agent;
pub mod backoff;
pub mod backup_hooks;
pub mod backup_job;
pub mod clock;
pub mod cluster_storage_group;
pub mod conditions;
pub mod context;
pub mod controllers;
pub mod crd_install;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod group_access;
pub mod group_snapshot;
pub mod hook_runs;
pub mod hooks;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod node_slots;
pub mod overview;
pub mod populator;
pub mod references;
pub mod restore_request;
pub mod schedule;
pub mod schedule_plan;
pub mod schedule_window;
pub mod scheduled_verifications;
pub mod snapshot_source;
pub mod status;
pub mod storage_group;
pub mod verification;
pub mod verification_plan;
pub mod volume_snapshot;
