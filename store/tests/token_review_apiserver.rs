//! The TokenReview authenticator against a real API server (KUBECONFIG; run with
//! `--include-ignored` as scripts/test.sh does): tokens of the ServiceAccount `hort-agent` in
//! two namespaces, requested for the audience `hort-store`, map to their namespaces; another
//! ServiceAccount's token and a token for another audience are refused.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace as KubeNamespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use hort_store::auth::{AuthErrorKind, Authenticator, Token};
use hort_store::check::Namespace;
use hort_store::review::{AGENT_SERVICE_ACCOUNT, AUDIENCE, TokenReviews};

async fn create_namespace(client: &Client, name: &str) {
    let namespace = KubeNamespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<KubeNamespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

/// A token of ServiceAccount `account` in `namespace` (created here) for `audience`.
async fn token(client: &Client, namespace: &str, account: &str, audience: &str) -> Token {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    if accounts.get_opt(account).await.unwrap().is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        accounts.create(&PostParams::default(), &sa).await.unwrap();
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap();
    Token::from_header(&format!("Bearer {}", answer.status.unwrap().token)).unwrap()
}

#[tokio::test]
#[ignore = "needs the API server of KUBECONFIG"]
async fn agent_tokens_map_to_their_namespace_and_nothing_else_is_accepted() {
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e})"));
    let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
    let suffix = format!("{:x}", std::process::id() ^ nanos);
    let (a, b) = (format!("store-a-{suffix}"), format!("store-b-{suffix}"));
    for ns in [&a, &b] {
        create_namespace(&client, ns).await;
    }
    let reviews = TokenReviews::new(client.clone());

    for ns in [&a, &b] {
        let agent = token(&client, ns, AGENT_SERVICE_ACCOUNT, AUDIENCE).await;
        assert_eq!(reviews.namespace(&agent).await.unwrap(), Namespace::parse(ns).unwrap());
        // Remembered: the same answer again.
        assert_eq!(reviews.namespace(&agent).await.unwrap(), Namespace::parse(ns).unwrap());
    }
    let other_account = token(&client, &a, "default-workload", AUDIENCE).await;
    let refused = reviews.namespace(&other_account).await.unwrap_err();
    assert_eq!(refused.kind, AuthErrorKind::Refused);
    assert!(refused.message.contains("default-workload"), "{}", refused.message);
    let other_audience = token(&client, &a, AGENT_SERVICE_ACCOUNT, "some-other-service").await;
    let refused = reviews.namespace(&other_audience).await.unwrap_err();
    assert_eq!(refused.kind, AuthErrorKind::Refused, "{}", refused.message);
    let garbage = Token::from_header("Bearer not-a-token").unwrap();
    assert_eq!(
        reviews.namespace(&garbage).await.unwrap_err().kind,
        AuthErrorKind::Refused
    );

    for ns in [&a, &b] {
        let _ = Api::<KubeNamespace>::all(client.clone())
            .delete(ns, &DeleteParams::default())
            .await;
    }
}
