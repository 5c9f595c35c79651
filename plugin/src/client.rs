//! The Kubernetes client, from the kubeconfig as kubectl reads it.

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::cli::Global;
use crate::error::{PluginError, Result};

/// A client and the namespace the command works in.
pub async fn connect(global: &Global) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&global.kubeconfig, &global.context) {
        (Some(path), _) => {
            let file =
                Kubeconfig::read_from(path).map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| PluginError::Config(e.to_string()))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
        (None, None) => Config::infer().await.map_err(|e| PluginError::Config(e.to_string()))?,
    };
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    Ok((client, namespace))
}
