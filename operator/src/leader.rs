//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas only one reconciles (and so only one creates scheduled BackupJobs).
//!
//! The holder renews the lease every `renew_every`; another replica takes it over once it has
//! not been renewed for `lease_duration`. Every write carries the lease's resourceVersion, so
//! two replicas can never both believe they won.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// Settings of one elector.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews it.
    pub renew_every: Duration,
}

/// Competes for and holds one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease.
    Leading,
    /// Another replica holds a valid lease.
    Following,
}

impl LeaderElector {
    /// An elector for `config`.
    pub fn new(client: &Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &config.namespace),
            config,
        }
    }

    /// Tries once to acquire or renew the lease.
    pub async fn try_acquire(&self) -> kube::Result<Attempt> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let ours = holder == Some(self.config.identity.as_str());
        let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
        let duration = spec.lease_duration_seconds.map_or(self.config.lease_duration, |s| {
            Duration::from_secs(s.max(1).unsigned_abs().into())
        });
        let expired = renewed.is_none_or(|r| now.duration_since(r).unsigned_abs() > duration);
        if !ours && !expired && holder.is_some() {
            return Ok(Attempt::Following);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.map_or(now, |t| t.0)
        } else {
            now
        };
        let mut updated = lease.clone();
        updated.spec = Some(self.spec(acquired, transitions, now));
        // `replace` sends the resourceVersion read above: a concurrent winner makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                if !ours {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.name, "acquired leadership");
                }
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(Attempt::Leading) => return,
                Ok(Attempt::Following) => {}
                Err(error) => tracing::warn!(%error, lease = %self.config.name, "leader election request failed"),
            }
            tokio::time::sleep(self.config.renew_every).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease is valid (another
    /// replica may then lead); returns at that point, and the caller must stop reconciling.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            match self.try_acquire().await {
                Ok(Attempt::Leading) => last_renewal = tokio::time::Instant::now(),
                Ok(Attempt::Following) => {
                    tracing::error!(lease = %self.config.name, "another replica took the lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.config.name, "renewing the lease failed");
                    if last_renewal.elapsed() >= self.config.lease_duration {
                        return;
                    }
                }
            }
        }
    }

    fn spec(&self, acquired: Timestamp, transitions: i32, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                self.config
                    .lease_duration
                    .as_secs()
                    .max(1)
                    .try_into()
                    .unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
