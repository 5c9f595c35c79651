//! Bandwidth limits: a [`Backend`] wrapper that holds the bytes a process sends to and
//! receives from its repository to a rate, one for uploads and one for downloads.
//!
//! Every backend wrapped by one [`Throttle`] draws from the same two token buckets, so the
//! limits hold for the process as a whole: for all its threads, and for all targets of a
//! storage group together (a `Mirror` that writes a pack to three targets counts it three
//! times, as it crosses the network three times).
//!
//! What is counted: the bytes of the files as they are stored, so after compression and
//! encryption. Uploads (`write`, `write_file`) take their tokens before they start; downloads
//! (`read`, `read_range`, `read_tail`, `read_range_copy`) take the bytes they received after
//! they arrived, so a read that fails costs nothing. Listings, deletions and other requests
//! without a body are not counted.
//!
//! The bucket starts empty and holds at most one second's worth of tokens, gathered while
//! idle. A request larger than that is never refused: it takes what is there and leaves a
//! debt, and it (an upload) or the next request (after a download) waits until the debt is
//! paid. So `t` seconds after the throttle was made, uploads of at most `limit × t` bytes
//! have started, and downloads of at most `limit × t` bytes have been paid for (each thread
//! may have received one more before it waits).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, BackendError, FileKind, LocalFile};

/// How much tokens a bucket holds at most: one second's worth of its rate.
const BURST: Duration = Duration::from_secs(1);

/// Time as a [`Throttle`] sees it; tests pass a clock of their own.
pub trait Clock: Send + Sync {
    /// Time since a fixed origin of this clock.
    fn now(&self) -> Duration;
    /// Blocks the calling thread for `duration`.
    fn sleep(&self, duration: Duration);
}

/// The real clock: monotonic time and `std::thread::sleep`.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Bytes per second a process may send to (`upload`) and receive from (`download`) its
/// repository; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Uploads: writes of every kind of file.
    pub upload: Option<NonZeroU64>,
    /// Downloads: reads of every kind of file.
    pub download: Option<NonZeroU64>,
}

/// One direction's token bucket, kept as the time at which everything taken so far is paid
/// for (`paid_at`): the bucket holds `(now - paid_at) × rate` tokens, at most [`BURST`]'s
/// worth; a `paid_at` in the future is a debt.
struct Bucket {
    rate: NonZeroU64,
    paid_at: Mutex<Duration>,
    bytes: AtomicU64,
    waited_nanos: AtomicU64,
}

impl Bucket {
    fn new(rate: NonZeroU64, now: Duration) -> Self {
        Self {
            rate,
            paid_at: Mutex::new(now),
            bytes: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// The time `bytes` take at the rate, rounded up to the nanosecond.
    fn cost(&self, bytes: u64) -> Duration {
        let nanos = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(self.rate.get()));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes `bytes` tokens at time `now` and returns how long the caller must wait for the
    /// debt that leaves (zero when the bucket held enough).
    fn reserve(&self, bytes: u64, now: Duration) -> Duration {
        let mut paid_at = self.paid_at.lock().unwrap_or_else(|p| p.into_inner());
        *paid_at = (*paid_at).max(now.saturating_sub(BURST)) + self.cost(bytes);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        paid_at.saturating_sub(now)
    }

    /// Takes `bytes` tokens and waits for its debt on `clock`.
    fn take(&self, bytes: u64, clock: &dyn Clock) {
        let wait = self.reserve(bytes, clock.now());
        if !wait.is_zero() {
            let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
            self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
            clock.sleep(wait);
        }
    }
}

/// What a [`Throttle`] counted in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Bytes counted against the limit.
    pub bytes: u64,
    /// Time the callers waited, summed over threads.
    pub waited: Duration,
}

/// The limits of one process: wrap every backend it opens with [`Throttle::wrap`] (clones
/// share the buckets).
#[derive(Clone, Default)]
pub struct Throttle {
    clock: Option<Arc<dyn Clock>>,
    upload: Option<Arc<Bucket>>,
    download: Option<Arc<Bucket>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("limits", &self.limits()).finish()
    }
}

impl Throttle {
    /// Buckets for `limits` on the real clock.
    pub fn new(limits: Limits) -> Self {
        Self::with_clock(limits, Arc::new(SystemClock::default()))
    }

    /// Buckets for `limits` on `clock`.
    pub fn with_clock(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let bucket = |rate: Option<NonZeroU64>| rate.map(|rate| Arc::new(Bucket::new(rate, now)));
        Self {
            upload: bucket(limits.upload),
            download: bucket(limits.download),
            clock: Some(clock),
        }
    }

    /// The limits it holds to.
    pub fn limits(&self) -> Limits {
        Limits {
            upload: self.upload.as_ref().map(|b| b.rate),
            download: self.download.as_ref().map(|b| b.rate),
        }
    }

    /// `backend`, with its transfers counted against these limits; `backend` itself when
    /// there are none.
    pub fn wrap(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        if self.upload.is_none() && self.download.is_none() {
            return backend;
        }
        Arc::new(Throttled {
            inner: backend,
            throttle: self.clone(),
        })
    }

    /// What was counted so far as uploads.
    pub fn uploaded(&self) -> Counted {
        Self::counted(self.upload.as_deref())
    }

    /// What was counted so far as downloads.
    pub fn downloaded(&self) -> Counted {
        Self::counted(self.download.as_deref())
    }

    fn counted(bucket: Option<&Bucket>) -> Counted {
        bucket.map_or_else(Counted::default, |b| Counted {
            bytes: b.bytes.load(Ordering::Relaxed),
            waited: Duration::from_nanos(b.waited_nanos.load(Ordering::Relaxed)),
        })
    }

    fn take(&self, bucket: Option<&Bucket>, bytes: u64) {
        if let (Some(bucket), Some(clock)) = (bucket, &self.clock) {
            bucket.take(bytes, clock.as_ref());
        }
    }

    fn upload(&self, bytes: u64) {
        self.take(self.upload.as_deref(), bytes);
    }

    /// Counts a download that arrived (`Ok`) and passes the result on.
    fn download(&self, read: Result<Vec<u8>, BackendError>) -> Result<Vec<u8>, BackendError> {
        if let Ok(data) = &read {
            self.take(self.download.as_deref(), data.len() as u64);
        }
        read
    }
}

/// A backend whose transfers are counted against a [`Throttle`].
struct Throttled {
    inner: Arc<dyn Backend>,
    throttle: Throttle,
}

impl Backend for Throttled {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.inner.list(kind)
    }

    fn list_every_target(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.inner.list_every_target(kind)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.throttle.download(self.inner.read(kind, name))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        self.throttle
            .download(self.inner.read_range(kind, name, offset, length))
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        self.throttle.download(self.inner.read_tail(kind, name, length))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.throttle.upload(data.len() as u64);
        self.inner.write(kind, name, data)
    }

    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        self.throttle.upload(source.size);
        self.inner.write_file(kind, name, source)
    }

    fn bytes_used(&self) -> Result<Option<u64>, BackendError> {
        self.inner.bytes_used()
    }

    fn free_bytes(&self) -> Option<u64> {
        self.inner.free_bytes()
    }

    fn missed_writes(&self) -> Vec<String> {
        self.inner.missed_writes()
    }

    fn copies(&self) -> usize {
        self.inner.copies()
    }

    fn read_range_copy(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        copy: usize,
    ) -> Result<Vec<u8>, BackendError> {
        self.throttle
            .download(self.inner.read_range_copy(kind, name, offset, length, copy))
    }

    fn retained_until(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BackendError> {
        self.inner.retained_until(kind, name)
    }

    fn object_lock_enabled(&self) -> Result<Option<bool>, BackendError> {
        self.inner.object_lock_enabled()
    }

    fn archives(&self) -> Result<bool, BackendError> {
        self.inner.archives()
    }

    fn make_readable(&self, names: &[String], wait: Duration) -> Result<Vec<String>, BackendError> {
        self.inner.make_readable(names, wait)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.inner.delete(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::group::{Strategy, Target, TargetGroup};
    use crate::backend::memory::MemoryBackend;

    const MIB: u64 = 1 << 20;

    /// A clock that stands still unless a test moves it, or (`advancing`) moves by each sleep;
    /// it records every sleep asked of it.
    #[derive(Default)]
    struct FakeClock {
        now: Mutex<Duration>,
        sleeps: Mutex<Vec<Duration>>,
        advancing: bool,
    }

    impl FakeClock {
        fn advancing() -> Arc<Self> {
            Arc::new(Self {
                advancing: true,
                ..Self::default()
            })
        }

        fn advance(&self, by: Duration) {
            *self.now.lock().unwrap() += by;
        }

        fn sleeps(&self) -> Vec<Duration> {
            self.sleeps.lock().unwrap().clone()
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.now.lock().unwrap()
        }

        fn sleep(&self, duration: Duration) {
            self.sleeps.lock().unwrap().push(duration);
            if self.advancing {
                self.advance(duration);
            }
        }
    }

    fn limits(upload: Option<u64>, download: Option<u64>) -> Limits {
        Limits {
            upload: upload.and_then(NonZeroU64::new),
            download: download.and_then(NonZeroU64::new),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn uploads_and_downloads_of_n_bytes_take_n_over_the_limit() {
        let clock = FakeClock::advancing();
        let throttle = Throttle::with_clock(limits(Some(MIB), Some(2 * MIB)), clock.clone());
        let backend = throttle.wrap(Arc::new(MemoryBackend::new()));
        let pack = vec![7u8; 4 * MIB as usize];
        for i in 0..10 {
            backend.write(FileKind::Pack, &format!("{i:02}"), &pack).unwrap();
        }
        assert_eq!(clock.now(), secs(40), "40 MiB at 1 MiB/s, from an empty bucket");
        assert_eq!(clock.sleeps(), vec![secs(4); 10], "each 4 MiB pack waits for its share");
        for i in 0..10 {
            assert_eq!(
                backend.read(FileKind::Pack, &format!("{i:02}")).unwrap().len(),
                pack.len()
            );
        }
        assert_eq!(
            clock.now(),
            secs(40 + 19),
            "40 MiB at 2 MiB/s, less the one second's worth the download bucket gathered meanwhile"
        );
        let range = backend.read_range(FileKind::Pack, "00", 0, MIB).unwrap();
        let tail = backend.read_tail(FileKind::Pack, "01", MIB).unwrap();
        assert_eq!((range.len(), tail.len()), (MIB as usize, MIB as usize));
        assert_eq!(clock.now(), secs(60), "ranges and tails count their bytes too");
        let counted = (throttle.uploaded(), throttle.downloaded());
        assert_eq!(
            counted.0,
            Counted {
                bytes: 40 * MIB,
                waited: secs(40)
            }
        );
        assert_eq!(
            counted.1,
            Counted {
                bytes: 42 * MIB,
                waited: secs(20)
            }
        );
    }

    #[test]
    fn idle_time_fills_the_bucket_with_at_most_one_seconds_worth() {
        let clock = Arc::new(FakeClock::default());
        let throttle = Throttle::with_clock(limits(Some(MIB), None), clock.clone());
        let backend = throttle.wrap(Arc::new(MemoryBackend::new()));
        clock.advance(secs(3600));
        let one_second = vec![0u8; MIB as usize];
        backend.write(FileKind::Pack, "a", &one_second).unwrap();
        assert!(clock.sleeps().is_empty(), "an idle bucket holds one second's worth");
        backend.write(FileKind::Pack, "b", &one_second).unwrap();
        assert_eq!(clock.sleeps(), [secs(1)], "and not more, however long it was idle");
        clock.advance(Duration::from_millis(1500));
        backend.write(FileKind::Pack, "c", &[0u8; 512 * 1024]).unwrap();
        assert_eq!(clock.sleeps().len(), 1, "the debt was paid and half a second refilled");
        // A write much larger than the bucket is never refused: it waits for its share.
        backend
            .write(FileKind::Pack, "d", &vec![0u8; 16 * MIB as usize])
            .unwrap();
        assert_eq!(clock.sleeps()[1], secs(16));
    }

    #[test]
    fn threads_share_one_bucket_and_wait_in_turn() {
        let clock = Arc::new(FakeClock::default());
        let throttle = Throttle::with_clock(limits(Some(MIB), None), clock.clone());
        let backend = throttle.wrap(Arc::new(MemoryBackend::new()));
        let pack = vec![1u8; 2 * MIB as usize];
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (backend, pack, start) = (&backend, &pack, &start);
                s.spawn(move || {
                    start.wait();
                    backend.write(FileKind::Pack, &format!("t{t}"), pack).unwrap();
                });
            }
        });
        let mut sleeps = clock.sleeps();
        sleeps.sort();
        assert_eq!(
            sleeps,
            [secs(2), secs(4), secs(6), secs(8)],
            "4 × 2 MiB at 1 MiB/s in all"
        );
        // Another wrapped backend of the same throttle (another target) joins the queue.
        let other = throttle.wrap(Arc::new(MemoryBackend::new()));
        other.write(FileKind::Pack, "x", &pack).unwrap();
        assert_eq!(clock.sleeps().last(), Some(&secs(10)));
    }

    #[test]
    fn each_direction_has_its_own_limit_and_failed_reads_cost_nothing() {
        let clock = Arc::new(FakeClock::default());
        let throttle = Throttle::with_clock(limits(None, Some(1000)), clock.clone());
        let backend = throttle.wrap(Arc::new(MemoryBackend::new()));
        backend.write(FileKind::Pack, "p", &[0u8; 5000]).unwrap();
        assert!(clock.sleeps().is_empty(), "no upload limit");
        assert!(backend.read(FileKind::Pack, "missing").unwrap_err().is_not_found());
        assert!(backend.read_range(FileKind::Pack, "p", 4000, 2000).is_err());
        assert!(clock.sleeps().is_empty(), "nothing arrived, nothing counted");
        assert_eq!(throttle.downloaded().bytes, 0);
        backend.read_range_copy(FileKind::Pack, "p", 0, 2500, 0).unwrap();
        assert_eq!(clock.sleeps(), [Duration::from_millis(2500)]);
        assert_eq!(throttle.uploaded(), Counted::default());
        let unlimited = Throttle::default();
        let plain: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        assert!(
            Arc::ptr_eq(&unlimited.wrap(plain.clone()), &plain),
            "no limits: no wrapper"
        );
    }

    #[test]
    fn a_mirror_counts_every_copy_it_sends() {
        let clock = FakeClock::advancing();
        let throttle = Throttle::with_clock(limits(Some(MIB), None), clock.clone());
        let targets = (0..3)
            .map(|_| Target {
                backend: throttle.wrap(Arc::new(MemoryBackend::new())),
                weight: 1,
            })
            .collect();
        let group = TargetGroup::new(targets, Strategy::Mirror).unwrap();
        group.write(FileKind::Pack, "p", &vec![0u8; MIB as usize]).unwrap();
        assert_eq!(throttle.uploaded().bytes, 3 * MIB);
        assert_eq!(clock.now(), secs(3), "three copies of 1 MiB at 1 MiB/s");
    }
}
