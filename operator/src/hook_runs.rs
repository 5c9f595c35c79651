//! Work that may take long (hooks run through `pods/exec`) runs here, in tasks of its own, not
//! inside a reconcile: a reconcile starts it, returns at once, and picks up the result on a
//! later pass. So one tenant's slow or hung hooks hold no reconcile slot and delay no other
//! object. Runs are fair across namespaces: each namespace runs at most
//! [`RUNS_PER_NAMESPACE`] at a time (the rest wait for a turn), and the operator at most
//! [`RUNS_IN_ALL`].
//!
//! The runs live only in this process: when the operator stops, they are aborted with it, and
//! a new operator finds none, which the reconcilers treat as "broke off" (see `hooks`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Runs of one namespace at the same time.
pub const RUNS_PER_NAMESPACE: usize = 2;
/// Runs of the whole operator at the same time.
pub const RUNS_IN_ALL: usize = 32;
/// A result nobody picked up (its object was deleted meanwhile) is forgotten after this long.
const UNCLAIMED: Duration = Duration::from_secs(3600);

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poll<T> {
    /// No run with this key is known: none was started in this process, or its result was
    /// forgotten.
    Unknown,
    /// It waits for its turn or runs.
    Running,
    /// It ended with this result.
    Done(T),
}

enum Entry<T> {
    Running(AbortHandle),
    Done(T, Instant),
}

/// Runs keyed by `K` that end with a `T`.
pub struct Runs<K, T> {
    entries: Arc<Mutex<HashMap<K, Entry<T>>>>,
    turns: Arc<Turns>,
}

/// The turns of namespaces: a semaphore each, and one for all.
struct Turns {
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
    all: Arc<Semaphore>,
    per_namespace: usize,
}

impl<K, T> Runs<K, T>
where
    K: Clone + Eq + Hash + Send + 'static,
    T: Clone + Send + 'static,
{
    /// No runs; at most `per_namespace` of a namespace and `in_all` of all at a time.
    pub fn new(per_namespace: usize, in_all: usize) -> Self {
        Self {
            entries: Arc::default(),
            turns: Arc::new(Turns {
                namespaces: Mutex::default(),
                all: Arc::new(Semaphore::new(in_all)),
                per_namespace,
            }),
        }
    }

    /// Where run `key` stands.
    pub fn poll(&self, key: &K) -> Poll<T> {
        let mut entries = self.entries.lock().expect("runs lock");
        entries.retain(|_, e| !matches!(e, Entry::Done(_, at) if at.elapsed() > UNCLAIMED));
        match entries.get(key) {
            None => Poll::Unknown,
            Some(Entry::Running(_)) => Poll::Running,
            Some(Entry::Done(result, _)) => Poll::Done(result.clone()),
        }
    }

    /// Starts run `key` of `namespace` (when its turn comes) unless one with that key is known.
    pub fn start<F>(&self, key: K, namespace: &str, work: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut entries = self.entries.lock().expect("runs lock");
        if entries.contains_key(&key) {
            return;
        }
        let (namespace_turn, all) = (self.turns.of(namespace), self.turns.all.clone());
        let done = self.entries.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let _namespace_turn = namespace_turn.acquire_owned().await.expect("never closed");
            let _turn = all.acquire_owned().await.expect("never closed");
            let result = work.await;
            let mut entries = done.lock().expect("runs lock");
            // A run that was forgotten meanwhile stays forgotten.
            if let Some(entry) = entries.get_mut(&task_key) {
                *entry = Entry::Done(result, Instant::now());
            }
        });
        entries.insert(key, Entry::Running(task.abort_handle()));
    }

    /// Forgets run `key` once its result is recorded elsewhere (a running one is aborted).
    pub fn forget(&self, key: &K) {
        if let Some(Entry::Running(task)) = self.entries.lock().expect("runs lock").remove(key) {
            task.abort();
        }
    }
}

impl Turns {
    fn of(&self, namespace: &str) -> Arc<Semaphore> {
        let mut namespaces = self.namespaces.lock().expect("turns lock");
        // Namespaces with nothing running are dropped, so the map stays as small as the load.
        namespaces.retain(|_, s| s.available_permits() < self.per_namespace || Arc::strong_count(s) > 1);
        namespaces
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_namespace)))
            .clone()
    }
}

impl<K, T> Drop for Runs<K, T> {
    /// Runs end with the operator that started them.
    fn drop(&mut self) {
        for entry in self.entries.lock().expect("runs lock").values() {
            if let Entry::Running(task) = entry {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn settle<K, T>(runs: &Runs<K, T>, key: &K) -> T
    where
        K: Clone + Eq + Hash + Send + 'static,
        T: Clone + Send + 'static,
    {
        loop {
            if let Poll::Done(result) = runs.poll(key) {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_run_starts_once_and_its_result_stays_until_forgotten() {
        let runs: Runs<&str, u32> = Runs::new(2, 8);
        let started = Arc::new(AtomicUsize::new(0));
        assert_eq!(runs.poll(&"a"), Poll::Unknown);
        for _ in 0..3 {
            let started = started.clone();
            runs.start("a", "ns", async move {
                started.fetch_add(1, Ordering::SeqCst);
                7
            });
        }
        assert_eq!(settle(&runs, &"a").await, 7);
        assert_eq!(runs.poll(&"a"), Poll::Done(7), "the result stays until forgotten");
        assert_eq!(started.load(Ordering::SeqCst), 1, "a known key starts nothing");
        runs.forget(&"a");
        assert_eq!(runs.poll(&"a"), Poll::Unknown);
    }

    #[tokio::test]
    async fn a_namespace_with_hung_runs_delays_no_other_namespace() {
        let runs: Runs<String, u32> = Runs::new(2, 8);
        // Namespace "busy" starts five runs that never end: two run, three wait their turn.
        for i in 0..5 {
            runs.start(format!("busy-{i}"), "busy", std::future::pending());
        }
        runs.start("calm".into(), "calm", async { 1 });
        let calm = tokio::time::timeout(Duration::from_secs(5), settle(&runs, &"calm".to_string())).await;
        assert_eq!(calm, Ok(1));
        assert!((0..5).all(|i| runs.poll(&format!("busy-{i}")) == Poll::Running));
    }

    #[tokio::test]
    async fn one_namespace_runs_at_most_its_share_at_a_time() {
        let runs: Runs<u32, ()> = Runs::new(2, 8);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for i in 0..6 {
            let (running, most) = (running.clone(), most.clone());
            runs.start(i, "ns", async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        for i in 0..6 {
            settle(&runs, &i).await;
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn runs_end_with_the_operator_that_started_them() {
        let runs: Runs<u32, ()> = Runs::new(2, 8);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runs.start(1, "ns", async move {
            let _tx = tx;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
        started_rx.await.unwrap();
        drop(runs);
        assert!(rx.await.is_err(), "the run was aborted, dropping its sender");
    }
}
