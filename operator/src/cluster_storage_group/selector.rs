//! `spec.allowedNamespaces` (pure): which namespaces a ClusterStorageGroup's label selector
//! selects, with the API server's rules for `matchLabels` and `matchExpressions`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The field the selector is read from, for messages.
pub const FIELD: &str = "spec.allowedNamespaces";

/// Why `spec.allowedNamespaces` selects nothing: an expression the API server would refuse
/// in a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// An operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{FIELD}.matchExpressions[{index}].operator is {operator:?}; it must be In, NotIn, Exists or DoesNotExist")]
    UnknownOperator {
        /// Index of the expression.
        index: usize,
        /// The operator as written.
        operator: String,
    },
    /// `In` or `NotIn` without values.
    #[error("{FIELD}.matchExpressions[{index}].values must not be empty with operator {operator}")]
    NoValues {
        /// Index of the expression.
        index: usize,
        /// The operator.
        operator: String,
    },
    /// `Exists` or `DoesNotExist` with values.
    #[error("{FIELD}.matchExpressions[{index}].values must be empty with operator {operator}")]
    UnexpectedValues {
        /// Index of the expression.
        index: usize,
        /// The operator.
        operator: String,
    },
}

/// Checks that every expression of `selector` is one the API server accepts.
pub fn validate(selector: &LabelSelector) -> Result<(), SelectorError> {
    for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let values = expression.values.as_deref().unwrap_or_default();
        let operator = expression.operator.clone();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(SelectorError::NoValues { index, operator }),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues { index, operator });
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => return Err(SelectorError::UnknownOperator { index, operator }),
        }
    }
    Ok(())
}

/// Whether a namespace with `labels` is selected by a [`validate`]d `selector`: every
/// `matchLabels` entry and every expression holds (`{}` selects every namespace).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let listed = || value.is_some_and(|v| e.values.iter().flatten().any(|allowed| allowed == v));
        match e.operator.as_str() {
            "In" => listed(),
            "NotIn" => !listed(),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_empty_selector_selects_every_namespace() {
        assert!(matches(&selector("{}"), &labels(&[])));
        assert!(matches(&selector("{}"), &labels(&[("team", "a")])));
    }

    #[test]
    fn match_labels_and_every_operator_select_as_the_api_server_does() {
        let s = selector(
            "matchLabels: {hort.dev/backups: shared}\n\
             matchExpressions:\n\
             - {key: tier, operator: In, values: [prod, staging]}\n\
             - {key: legacy, operator: NotIn, values: ['true']}\n\
             - {key: team, operator: Exists}\n\
             - {key: frozen, operator: DoesNotExist}",
        );
        validate(&s).unwrap();
        let ok = [("hort.dev/backups", "shared"), ("tier", "prod"), ("team", "a")];
        assert!(matches(&s, &labels(&ok)));
        assert!(
            matches(&s, &labels(&[ok[0], ok[1], ok[2], ("legacy", "false")])),
            "NotIn another value"
        );
        assert!(!matches(&s, &labels(&[ok[1], ok[2]])), "matchLabels missing");
        assert!(
            !matches(&s, &labels(&[("hort.dev/backups", "other"), ok[1], ok[2]])),
            "matchLabels other value"
        );
        assert!(
            !matches(&s, &labels(&[ok[0], ("tier", "dev"), ok[2]])),
            "In: not listed"
        );
        assert!(!matches(&s, &labels(&[ok[0], ok[2]])), "In: label absent");
        assert!(
            !matches(&s, &labels(&[ok[0], ok[1], ok[2], ("legacy", "true")])),
            "NotIn: listed"
        );
        assert!(!matches(&s, &labels(&[ok[0], ok[1]])), "Exists: absent");
        assert!(
            !matches(&s, &labels(&[ok[0], ok[1], ok[2], ("frozen", "")])),
            "DoesNotExist: present"
        );
        let not_in = selector("matchExpressions: [{key: legacy, operator: NotIn, values: ['true']}]");
        assert!(matches(&not_in, &labels(&[])), "NotIn holds when the label is absent");
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        let unknown =
            selector("matchExpressions: [{key: a, operator: Exists}, {key: b, operator: Equals, values: [x]}]");
        assert_eq!(
            validate(&unknown).unwrap_err().to_string(),
            "spec.allowedNamespaces.matchExpressions[1].operator is \"Equals\"; it must be In, NotIn, Exists or DoesNotExist"
        );
        let empty = selector("matchExpressions: [{key: a, operator: In}]");
        assert_eq!(
            validate(&empty).unwrap_err().to_string(),
            "spec.allowedNamespaces.matchExpressions[0].values must not be empty with operator In"
        );
        let values = selector("matchExpressions: [{key: a, operator: Exists, values: [x]}]");
        assert_eq!(
            validate(&values).unwrap_err(),
            SelectorError::UnexpectedValues {
                index: 0,
                operator: "Exists".into()
            }
        );
    }
}
