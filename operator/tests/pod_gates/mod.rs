//! The scheduling gates of a pod, for the API-server tests of pods held back (before their pre
//! hooks, or for a node slot).

use k8s_openapi::api::core::v1::Pod;

/// The names of `pod`'s scheduling gates.
pub fn gates(pod: &Pod) -> Vec<String> {
    let gates = pod.spec.as_ref().and_then(|s| s.scheduling_gates.clone());
    gates.into_iter().flatten().map(|g| g.name).collect()
}
