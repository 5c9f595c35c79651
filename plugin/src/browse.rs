//! `snapshots`, `ls`, `cat` and `download`: the agent runs them in a short-lived pod in the
//! namespace (built and run by the operator crate's `agent::browse` and `agent::browse_run`,
//! with the user's own client); the plugin execs `hort-agent` in it and reads its stdout. The
//! pod is deleted afterwards, also after an error or Ctrl-C.

use hort_protocol::units::Bytes;
use std::path::Path;
use std::time::Duration;

use hort_crds::StorageGroup;
use hort_operator::agent::browse::{AgentImage, browse_pod, pod_name, suffix};
use hort_operator::agent::browse_run::{delete_now, exec, wait_running};
use hort_protocol::report::{Report, decode};
use hort_protocol::{AgentCommand, EntryKind, Listing, SnapshotList, catalog};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use crate::browse_pod::{CREATED_BY, DEFAULT_IMAGE, image_of_operator};
use crate::cli::AgentFlags;
use crate::error::{PluginError, Result, is_not_found};
use crate::output::{Format, emit, structured, table};

/// Where the agent image comes from: the flag, the operator's Deployment, or the default.
async fn agent_image(client: &Client, flags: &AgentFlags) -> AgentImage {
    if let Some(image) = &flags.agent_image {
        return AgentImage {
            image: image.clone(),
            pull_policy: "IfNotPresent".into(),
        };
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &flags.operator_namespace);
    let listed = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await;
    match listed.map(|l| image_of_operator(&l.items)) {
        Ok(Some(image)) => image,
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                _ => "no Hort operator Deployment there".into(),
            };
            eprintln!(
                "note: the agent image is {DEFAULT_IMAGE}: the operator's Deployment in namespace {} does not name one ({why}); \
                 choose with --agent-image or --operator-namespace",
                flags.operator_namespace
            );
            AgentImage {
                image: DEFAULT_IMAGE.into(),
                pull_policy: "IfNotPresent".into(),
            }
        }
    }
}

/// Reads `group`, starts a browse pod for it, hands it to `work`, and deletes it afterwards
/// (also on error or Ctrl-C).
async fn with_pod<T>(
    client: &Client,
    namespace: &str,
    group: &str,
    flags: &AgentFlags,
    command: AgentCommand,
    work: impl AsyncFnOnce(&Api<Pod>, &str) -> Result<T>,
) -> Result<T> {
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), namespace);
    let group = groups.get(group).await.map_err(|e| match is_not_found(&e) {
        true => PluginError::NotFound {
            kind: "StorageGroup",
            namespace: namespace.into(),
            name: group.into(),
            hint: format!("list them with `kubectl hort status -n {namespace}`"),
        },
        false => PluginError::api(format!("reading StorageGroup {namespace}/{group}"), e),
    })?;
    let image = agent_image(client, flags).await;
    let name = pod_name(&group.metadata.name.clone().unwrap_or_default(), &suffix());
    let pod = browse_pod(&group, &image, &name, CREATED_BY, command);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| PluginError::api(format!("creating agent pod {namespace}/{name}"), e))?;
    let result = tokio::select! {
        result = async {
            wait_running(&pods, &name, namespace, Duration::from_secs(flags.start_timeout)).await?;
            work(&pods, &name).await
        } => result,
        _ = tokio::signal::ctrl_c() => Err(PluginError::Interrupted),
    };
    if let Err(e) = delete_now(&pods, &name).await {
        eprintln!("warning: could not delete agent pod {namespace}/{name}: {e}; it ends by itself within an hour");
    }
    result
}

/// Runs a listing command in a browse pod of `group` and reads its report.
pub(crate) async fn report<R: Report>(
    client: &Client,
    namespace: &str,
    group: &str,
    flags: &AgentFlags,
    command: AgentCommand,
) -> Result<R> {
    let run = command.clone();
    let out = with_pod(client, namespace, group, flags, command, async |pods, name| {
        let mut out = Vec::new();
        exec(pods, name, &run, &mut out).await?;
        Ok(out)
    })
    .await?;
    decode_report(&out)
}

/// Reads an agent's report from its stdout.
fn decode_report<R: Report>(out: &[u8]) -> Result<R> {
    let text = String::from_utf8_lossy(out);
    decode(&text).map_err(|e| PluginError::Agent(format!("{e} (agent image of another release? set --agent-image)")))
}

/// The snapshot list as a table.
pub fn snapshots_table(list: &SnapshotList) -> String {
    let rows: Vec<Vec<String>> = list
        .snapshots
        .iter()
        .map(|s| {
            let source = s.path.clone().unwrap_or_else(|| {
                let names: Vec<&str> = s.streams.iter().map(|st| st.name.as_str()).collect();
                names.join(",")
            });
            vec![
                s.id.chars().take(8).collect(),
                s.time.clone(),
                s.hostname.clone(),
                source,
                Bytes(s.bytes).to_string(),
                s.tags.join(","),
            ]
        })
        .collect();
    table(&["ID", "TIME", "HOST", "SOURCE", "SIZE", "TAGS"], &rows)
}

/// The listing as a table.
pub fn listing_table(listing: &Listing) -> String {
    let rows: Vec<Vec<String>> = listing
        .entries
        .iter()
        .map(|e| {
            let path = match (e.kind, &e.target) {
                (EntryKind::Dir, _) => format!("{}/", e.path),
                (EntryKind::Symlink, Some(t)) => format!("{} -> {t}", e.path),
                _ => e.path.clone(),
            };
            let kind = format!("{:?}", e.kind).to_lowercase();
            vec![
                kind,
                e.mode.clone(),
                e.size.to_string(),
                e.mtime.clone().unwrap_or_default(),
                path,
            ]
        })
        .collect();
    let mut out = table(&["KIND", "MODE", "SIZE", "MODIFIED", "PATH"], &rows);
    if !listing.tables.is_empty() {
        let rows: Vec<Vec<String>> = listing
            .tables
            .iter()
            .map(|t| vec![t.database.clone(), t.table.clone(), t.rows.to_string()])
            .collect();
        out.push('\n');
        out.push_str(&table(&["DATABASE", "TABLE", "ROWS"], &rows));
    }
    out
}

/// The user's backups of `list`: without Hort's own catalog snapshots unless `all` or a tag
/// asked for them (`tags`).
pub fn user_backups(mut list: SnapshotList, tags: &[String], all: bool) -> SnapshotList {
    if !all
        && !tags
            .iter()
            .any(|t| t == catalog::TAG || t.starts_with(&catalog::namespace_tag("")))
    {
        list.snapshots.retain(|s| !s.tags.iter().any(|t| t == catalog::TAG));
    }
    list
}

/// `snapshots GROUP` (`all`: with the catalog snapshots).
pub async fn snapshots(
    client: &Client,
    namespace: &str,
    group: &str,
    tags: &[String],
    all: bool,
    flags: &AgentFlags,
    format: Format,
) -> Result<()> {
    let list: SnapshotList = report(
        client,
        namespace,
        group,
        flags,
        AgentCommand::Snapshots { tags: tags.to_vec() },
    )
    .await?;
    let list = user_backups(list, tags, all);
    emit(&structured(format, &list)?.unwrap_or_else(|| snapshots_table(&list)))
}

/// `ls GROUP SNAPSHOT [PATH]`.
pub async fn ls(
    client: &Client,
    namespace: &str,
    group: &str,
    snapshot: &str,
    path: Option<&str>,
    flags: &AgentFlags,
    format: Format,
) -> Result<()> {
    let command = AgentCommand::Ls {
        snapshot: snapshot.into(),
        path: path.map(str::to_owned),
    };
    let listing: Listing = report(client, namespace, group, flags, command).await?;
    emit(&structured(format, &listing)?.unwrap_or_else(|| listing_table(&listing)))
}

/// `diff GROUP FROM TO [PATH]`: both listings read by one agent pod, then compared.
#[allow(clippy::too_many_arguments)]
pub async fn diff(
    client: &Client,
    namespace: &str,
    group: &str,
    from: &str,
    to: &str,
    path: Option<&str>,
    flags: &AgentFlags,
    format: Format,
) -> Result<()> {
    let ls = |snapshot: &str| AgentCommand::Ls {
        snapshot: snapshot.into(),
        path: path.map(str::to_owned),
    };
    let (first, second) = (ls(from), ls(to));
    let (from, to) = with_pod(client, namespace, group, flags, first.clone(), async |pods, name| {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        exec(pods, name, &first, &mut one).await?;
        exec(pods, name, &second, &mut two).await?;
        Ok((decode_report::<Listing>(&one)?, decode_report::<Listing>(&two)?))
    })
    .await?;
    let diff = crate::diff::compare(&from, &to);
    emit(&structured(format, &diff)?.unwrap_or_else(|| crate::diff::render(&diff)))
}

/// `cat GROUP SNAPSHOT PATH`, or with `file` `download … -O FILE` (written to `FILE.part`
/// and renamed once complete).
pub async fn cat(
    client: &Client,
    namespace: &str,
    group: &str,
    snapshot: &str,
    path: &str,
    file: Option<&Path>,
    flags: &AgentFlags,
) -> Result<()> {
    let command = AgentCommand::Cat {
        snapshot: snapshot.into(),
        path: path.into(),
    };
    let run = command.clone();
    with_pod(
        client,
        namespace,
        group,
        flags,
        command,
        async |pods, name| match file {
            None => Ok(exec(pods, name, &run, &mut tokio::io::stdout()).await?),
            Some(file) => {
                let part = file.with_extension(match file.extension() {
                    Some(ext) => format!("{}.part", ext.to_string_lossy()),
                    None => "part".into(),
                });
                let io = |what: String| move |source| PluginError::Io { what, source };
                let mut out = tokio::fs::File::create(&part)
                    .await
                    .map_err(io(format!("creating {}", part.display())))?;
                if let Err(e) = exec(pods, name, &run, &mut out).await {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(e.into());
                }
                out.sync_all()
                    .await
                    .map_err(io(format!("writing {}", part.display())))?;
                tokio::fs::rename(&part, file).await.map_err(io(format!(
                    "renaming {} to {}",
                    part.display(),
                    file.display()
                )))?;
                let size = tokio::fs::metadata(file).await.map(|m| m.len()).unwrap_or_default();
                eprintln!("{} ({}) written", file.display(), Bytes(size));
                Ok(())
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use hort_protocol::{ListedEntry, ListedStream, ListedTable, SnapshotSummary};

    use super::*;

    #[test]
    fn listings_render_as_tables() {
        let list = SnapshotList {
            snapshots: vec![SnapshotSummary {
                id: "0123456789abcdef".into(),
                time: "2026-11-30T02:30:00Z".into(),
                hostname: "demo/data".into(),
                path: None,
                streams: vec![ListedStream {
                    name: "postgres/shop.dump".into(),
                    size: 2048,
                }],
                tags: vec!["nightly".into(), "hort.dev/schedule=nightly".into()],
                bytes: 2048,
                files: 0,
            }],
        };
        assert_eq!(
            snapshots_table(&list),
            "ID         TIME                   HOST        SOURCE               SIZE      TAGS\n\
             01234567   2026-11-30T02:30:00Z   demo/data   postgres/shop.dump   2.0 KiB   nightly,hort.dev/schedule=nightly\n"
        );
        let listing = Listing {
            snapshot_id: "ab".into(),
            entries: vec![
                ListedEntry {
                    path: "media".into(),
                    kind: EntryKind::Dir,
                    size: 0,
                    mode: "755".into(),
                    mtime: Some("2026-11-30T02:30:00Z".into()),
                    target: None,
                    content: None,
                },
                ListedEntry {
                    path: "link".into(),
                    kind: EntryKind::Symlink,
                    size: 0,
                    mode: "777".into(),
                    mtime: None,
                    target: Some("media".into()),
                    content: None,
                },
            ],
            tables: vec![],
        };
        assert_eq!(
            listing_table(&listing),
            "KIND      MODE   SIZE   MODIFIED               PATH\n\
             dir       755    0      2026-11-30T02:30:00Z   media/\n\
             symlink   777    0                             link -> media\n"
        );
        let dump = Listing {
            snapshot_id: "cd".into(),
            entries: vec![],
            tables: vec![ListedTable {
                database: "shop".into(),
                table: "public.orders".into(),
                rows: 1200,
            }],
        };
        assert_eq!(
            listing_table(&dump),
            "KIND   MODE   SIZE   MODIFIED   PATH\n\n\
             DATABASE   TABLE           ROWS\n\
             shop       public.orders   1200\n"
        );
        assert_eq!(suffix().len(), 5);
    }

    #[test]
    fn catalog_snapshots_are_hidden_unless_asked_for() {
        let snapshot = |id: &str, tags: &[&str]| SnapshotSummary {
            id: id.into(),
            time: String::new(),
            hostname: String::new(),
            path: None,
            streams: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            bytes: 0,
            files: 0,
        };
        let list = SnapshotList {
            snapshots: vec![
                snapshot("user", &["hort.dev/namespace=shop"]),
                snapshot("catalog", &[catalog::TAG, "hort.dev/catalog-namespace=shop"]),
            ],
        };
        let ids = |l: SnapshotList| l.snapshots.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(user_backups(list.clone(), &[], false)), ["user"]);
        assert_eq!(ids(user_backups(list.clone(), &[], true)), ["user", "catalog"]);
        let asked = [catalog::namespace_tag("shop")];
        assert_eq!(ids(user_backups(list, &asked, false)), ["user", "catalog"]);
    }
}
