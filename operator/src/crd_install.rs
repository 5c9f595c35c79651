//! Installing or upgrading Hort's own CRDs at start-up by server-side apply, so that a chart
//! upgrade also upgrades the CRDs (Helm never upgrades files under a chart's `crds/`).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};

use crate::context::FIELD_MANAGER;

/// Why the CRDs could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CrdInstallError {
    /// The API server refused a CRD.
    #[error("applying CRD {name} failed: {source}")]
    Apply {
        /// Name of the CRD.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// A CRD was applied but not served in time.
    #[error("CRD {name} was not Established within {seconds} s")]
    NotEstablished {
        /// Name of the CRD.
        name: String,
        /// How long was waited.
        seconds: u64,
    },
}

/// Applies every Hort CRD and waits until the API server serves each.
pub async fn install(client: &Client) -> Result<(), CrdInstallError> {
    const WAIT: Duration = Duration::from_secs(30);
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hort_crds::crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|source| CrdInstallError::Apply {
                name: name.clone(),
                source,
            })?;
        let established = tokio::time::timeout(
            WAIT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        );
        match established.await {
            Ok(Ok(_)) => tracing::info!(crd = %name, "CRD applied and established"),
            _ => {
                return Err(CrdInstallError::NotEstablished {
                    name,
                    seconds: WAIT.as_secs(),
                });
            }
        }
    }
    Ok(())
}
