//! The agent image of the plugin's browse pods (the pods themselves are the operator crate's
//! `agent::browse::browse_pod`): the one the operator's Deployment names, or a default.

use hort_operator::agent::browse::AgentImage;
use k8s_openapi::api::apps::v1::Deployment;

/// The value of the browse pods' `app.kubernetes.io/created-by` label.
pub const CREATED_BY: &str = "kubectl-hort";
/// The agent image when neither `--agent-image` nor the operator's Deployment names one: the
/// chart's default for this release.
pub const DEFAULT_IMAGE: &str = concat!("hort-agent:", env!("CARGO_PKG_VERSION"));
/// The operator's variable that names the agent image.
const IMAGE_VARIABLE: &str = "HORT_AGENT_IMAGE";
/// The operator's variable that names the agent image's pull policy.
const PULL_POLICY_VARIABLE: &str = "HORT_AGENT_IMAGE_PULL_POLICY";

/// The agent image the operator of `deployments` runs (the chart's operator Deployment sets
/// it in the environment of its container), if one of them names it.
pub fn image_of_operator(deployments: &[Deployment]) -> Option<AgentImage> {
    deployments.iter().find_map(|d| {
        let containers = &d.spec.as_ref()?.template.spec.as_ref()?.containers;
        containers.iter().find_map(|c| {
            let env = c.env.as_ref()?;
            let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
            Some(AgentImage {
                image: value(IMAGE_VARIABLE)?,
                pull_policy: value(PULL_POLICY_VARIABLE).unwrap_or_else(|| "IfNotPresent".into()),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_comes_from_the_operators_deployment() {
        let deployment: Deployment = serde_yaml::from_str(
            "metadata: {name: hort-operator}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers:\n\
             \x20       - name: operator\n          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}},\n\
             \x20           {name: HORT_AGENT_IMAGE, value: 'registry/hort-agent:0.1.0'}, {name: HORT_AGENT_IMAGE_PULL_POLICY, value: Always}]",
        )
        .unwrap();
        assert_eq!(
            image_of_operator(&[deployment]),
            Some(AgentImage {
                image: "registry/hort-agent:0.1.0".into(),
                pull_policy: "Always".into()
            })
        );
        assert_eq!(image_of_operator(&[]), None);
    }
}
