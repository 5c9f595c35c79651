//! Whether a Kubernetes label selector (`metav1.LabelSelector`, as in a
//! `ClusterStorageGroup`'s `allowedNamespaces`) selects an object with given labels: every
//! `matchLabels` pair and every `matchExpressions` requirement (operators `In`, `NotIn`,
//! `Exists`, `DoesNotExist`) must hold; the empty selector selects everything. Pure code.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A requirement that is not a valid selector: the API server's own validation refuses
/// these, so one here selects nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// An operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("matchExpressions key `{key}`: unknown operator `{operator}` (In, NotIn, Exists, DoesNotExist)")]
    UnknownOperator {
        /// The requirement's key.
        key: String,
        /// The operator as given.
        operator: String,
    },
    /// `In`/`NotIn` without values, or `Exists`/`DoesNotExist` with values.
    #[error("matchExpressions key `{key}`: operator `{operator}` {problem}")]
    Values {
        /// The requirement's key.
        key: String,
        /// The operator.
        operator: String,
        /// What is wrong with its values.
        problem: &'static str,
    },
}

/// Whether `selector` selects an object labelled `labels`.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
    let pairs = selector.match_labels.iter().flatten();
    let labels_hold = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let mut expressions_hold = true;
    for requirement in selector.match_expressions.iter().flatten() {
        // Every requirement is checked, so that an invalid one is reported even after a
        // false one.
        expressions_hold &= holds(requirement, labels)?;
    }
    Ok(labels_hold && expressions_hold)
}

fn holds(requirement: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
    let key = &requirement.key;
    let values = requirement.values.as_deref().unwrap_or_default();
    let bad_values = |problem| SelectorError::Values {
        key: key.clone(),
        operator: requirement.operator.clone(),
        problem,
    };
    let value = labels.get(key);
    match requirement.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Err(bad_values("needs values")),
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(bad_values("takes no values")),
        "In" => Ok(value.is_some_and(|v| values.contains(v))),
        "NotIn" => Ok(!value.is_some_and(|v| values.contains(v))),
        "Exists" => Ok(value.is_some()),
        "DoesNotExist" => Ok(value.is_none()),
        other => Err(SelectorError::UnknownOperator {
            key: key.clone(),
            operator: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn expressions(list: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(list),
            ..Default::default()
        }
    }

    #[test]
    fn the_empty_selector_selects_everything_and_match_labels_need_every_pair() {
        let team = labels(&[("hort.dev/tenant", "yes"), ("tier", "gold")]);
        assert!(selects(&LabelSelector::default(), &team).unwrap());
        assert!(selects(&LabelSelector::default(), &labels(&[])).unwrap());
        let gold = LabelSelector {
            match_labels: Some(labels(&[("tier", "gold"), ("hort.dev/tenant", "yes")])),
            ..Default::default()
        };
        assert!(selects(&gold, &team).unwrap());
        assert!(!selects(&gold, &labels(&[("tier", "gold")])).unwrap());
        assert!(!selects(&gold, &labels(&[("tier", "silver"), ("hort.dev/tenant", "yes")])).unwrap());
    }

    #[test]
    fn each_operator_of_match_expressions() {
        let gold = labels(&[("tier", "gold")]);
        let none = labels(&[]);
        let case = |op, values: &[&str], l: &BTreeMap<String, String>| {
            selects(&expressions(vec![requirement("tier", op, values)]), l).unwrap()
        };
        assert!(case("In", &["gold", "silver"], &gold));
        assert!(!case("In", &["silver"], &gold));
        assert!(!case("In", &["gold"], &none));
        assert!(!case("NotIn", &["gold"], &gold));
        assert!(case("NotIn", &["silver"], &gold));
        assert!(case("NotIn", &["gold"], &none), "NotIn holds where the label is absent");
        assert!(case("Exists", &[], &gold));
        assert!(!case("Exists", &[], &none));
        assert!(!case("DoesNotExist", &[], &gold));
        assert!(case("DoesNotExist", &[], &none));
        let both = LabelSelector {
            match_labels: Some(labels(&[("tier", "gold")])),
            match_expressions: Some(vec![requirement("frozen", "DoesNotExist", &[])]),
        };
        assert!(selects(&both, &gold).unwrap());
        assert!(!selects(&both, &labels(&[("tier", "gold"), ("frozen", "")])).unwrap());
    }

    #[test]
    fn invalid_requirements_are_errors_naming_the_key() {
        let gold = labels(&[("tier", "gold")]);
        let error = |r| selects(&expressions(vec![r]), &gold).unwrap_err().to_string();
        assert!(error(requirement("tier", "Gt", &["1"])).contains("`tier`: unknown operator `Gt`"));
        assert!(error(requirement("tier", "In", &[])).contains("needs values"));
        assert!(error(requirement("tier", "Exists", &["x"])).contains("takes no values"));
        let after_false = expressions(vec![requirement("tier", "In", &["x"]), requirement("a", "Bad", &[])]);
        assert!(selects(&after_false, &gold).is_err());
    }
}
