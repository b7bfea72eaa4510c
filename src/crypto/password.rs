//! Password hashing with argon2id on a pool of dedicated threads behind an admission gate.
//!
//! A hash costs tens of milliseconds of CPU and ~19 MiB of memory. Running it on the async
//! workers would stall every other request, so it runs on its own threads (one per core by
//! default), which also run at a lower scheduling priority so that ordinary requests keep
//! their latency while logins saturate the CPU. At most `threads + queue` hashes are
//! admitted; beyond that the caller gets [`HashError::Overloaded`] at once (503 with
//! Retry-After) instead of waiting in an unbounded queue.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use std::cell::RefCell;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{legacy, random_bytes};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated")]
    Overloaded,
    #[error("the password hashing pool has stopped")]
    Stopped,
    #[error("argon2: {0}")]
    Argon2(String),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash uses other parameters than the configured ones: rehash after login.
    pub needs_rehash: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct HashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub threads: usize,
    pub queue: usize,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Handle to the hashing pool; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    jobs: Mutex<mpsc::Sender<Job>>,
    admission: Arc<Semaphore>,
    capacity: usize,
    /// A well-formed hash of nothing, checked when the account does not exist so that the
    /// answer costs the same time as for a real account.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.inner.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn start(settings: HashSettings) -> Result<PasswordHasher, HashError> {
        return_large_blocks_to_the_os();
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = settings.threads.max(1);
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("pv-hash-{i}"))
                .spawn(move || worker(&receiver))
                .map_err(|e| HashError::Argon2(format!("cannot start hashing thread: {e}")))?;
        }
        let capacity = threads + settings.queue;
        let dummy = dummy_hash(&params);
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                params,
                jobs: Mutex::new(sender),
                admission: Arc::new(Semaphore::new(capacity)),
                capacity,
                dummy,
            }),
        })
    }

    /// Hashes admitted but not finished (running or queued).
    pub fn in_flight(&self) -> usize {
        self.inner.capacity - self.inner.admission.available_permits()
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let params = self.inner.params.clone();
        self.run(move || {
            let salt = random_bytes::<16>();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_with_salt(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
        })
        .await?
    }

    /// Checks a password against a stored PHC string. An unparseable hash never matches.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: String,
    ) -> Result<Verification, HashError> {
        let params = self.inner.params.clone();
        self.run(move || verify_now(&params, password.expose_secret(), &stored))
            .await
    }

    /// Spends the time of a real verification against a hash nobody has, always failing.
    pub async fn verify_dummy(&self, password: SecretString) -> Result<(), HashError> {
        let params = self.inner.params.clone();
        let dummy = self.inner.dummy.clone();
        self.run(move || {
            let _ = verify_now(&params, password.expose_secret(), &dummy);
        })
        .await
    }

    /// Runs other CPU-heavy password work (such as strength estimation) on the pool, under the
    /// same admission gate, so a flood of it is refused like a flood of logins.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit: OwnedSemaphorePermit = self
            .inner
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Overloaded)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let started = std::time::Instant::now();
            let result = f();
            metrics::histogram!(crate::telemetry::metrics::HASH_DURATION)
                .record(started.elapsed().as_secs_f64());
            drop(permit);
            let _ = tx.send(result);
        });
        self.inner
            .jobs
            .lock()
            .map_err(|_| HashError::Stopped)?
            .send(job)
            .map_err(|_| HashError::Stopped)?;
        rx.await.map_err(|_| HashError::Stopped)
    }
}

/// How long a hashing thread keeps its argon2 memory after its last job.
const KEEP_MEMORY_IDLE: Duration = Duration::from_secs(1);

fn worker(receiver: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting at most KEEP_MEMORY_IDLE, so every thread in
        // turn gets to notice that it is idle and give its memory back.
        let job = match receiver.lock() {
            Ok(rx) => rx.recv_timeout(KEEP_MEMORY_IDLE),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(mpsc::RecvTimeoutError::Timeout) => release_memory(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

thread_local! {
    /// This thread's argon2 working memory (19 MiB by default), kept between hashes. A
    /// fresh allocation per hash cost 15-20% of a login's CPU in page faults and zeroing.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `blocks` blocks of this thread's reusable memory.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() != blocks {
            *memory = Vec::new();
            memory.resize(blocks, Block::default());
        }
        f(&mut memory)
    })
}

fn release_memory() {
    MEMORY.with(|memory| *memory.borrow_mut() = Vec::new());
}

/// What `argon2`'s own `verify_password` does, but in this thread's reusable memory:
/// recompute the hash with the stored parameters and salt, compare in constant time.
fn password_matches(password: &[u8], hash: &argon2::password_hash::phc::PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let expected = expected.as_bytes();
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, salt, out, memory)
    });
    computed.is_ok() && aws_lc_rs::constant_time::verify_slices_are_equal(out, expected).is_ok()
}

/// A new hash (signup, password change) allocates its whole memory cost (19 MiB by
/// default); verifications reuse their thread's memory (see `MEMORY`). glibc's adaptive mmap
/// threshold would soon serve such blocks from per-thread arenas and keep them after free:
/// a burst of logins left 237 MB resident in our measurement. A fixed 1 MiB threshold maps
/// and unmaps them per hash instead (23 MB after the same burst), at a cost measured in
/// `bench/README.md`.
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Runs this thread at nice +10 so request handling preempts hashing under load.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on our own thread id has no memory-safety preconditions.
    unsafe {
        let tid = libc::gettid();
        #[allow(clippy::useless_conversion)]
        let _ = libc::setpriority(
            libc::PRIO_PROCESS,
            libc::id_t::try_from(tid).unwrap_or(0),
            10,
        );
    }
}

/// Checks `password` against `stored`: our argon2id PHC strings, or any hash `portvakt
/// import` accepted (see `legacy`). Anything but a current argon2id hash that matches asks
/// for a rehash, so the next successful login moves it to argon2id.
pub(super) fn verify_now(params: &Params, password: &str, stored: &str) -> Verification {
    // Our own hashes first: no parsing beyond argon2's for the common case.
    let phc = if stored.starts_with("$argon2") {
        stored
    } else {
        match legacy::parse(stored) {
            Ok(legacy::Scheme::Argon2 { phc }) => phc,
            Ok(scheme) => {
                let matches = legacy::matches(password.as_bytes(), &scheme);
                return Verification {
                    matches,
                    needs_rehash: matches,
                };
            }
            Err(_) => {
                return Verification {
                    matches: false,
                    needs_rehash: false,
                };
            }
        }
    };
    // A foreign prefix (Django's `argon2`) is rewritten to our form at the next login.
    let foreign = phc.len() != stored.len();
    let Ok(hash) = argon2::password_hash::phc::PasswordHash::new(phc) else {
        return Verification {
            matches: false,
            needs_rehash: false,
        };
    };
    let matches = password_matches(password.as_bytes(), &hash);
    let current = hash.algorithm.as_str() == "argon2id"
        && hash.version == Some(0x13)
        && Params::try_from(&hash).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        });
    Verification {
        matches,
        needs_rehash: matches && (foreign || !current),
    }
}

/// A PHC string with the configured parameters, a random salt and a random output: checking
/// it costs exactly a real verification, and no password can match it.
fn dummy_hash(params: &Params) -> String {
    let salt = STANDARD_NO_PAD.encode(random_bytes::<16>());
    let output = STANDARD_NO_PAD.encode(random_bytes::<32>());
    format!(
        "$argon2id$v=19$m={},t={},p={}${salt}${output}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier as _;

    #[test]
    fn verifying_in_reused_memory_agrees_with_argon2_itself() {
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(64, 1, 1, None).unwrap(),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(256, 3, 2, Some(64)).unwrap(),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x10,
                Params::new(128, 2, 1, Some(16)).unwrap(),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x13,
                Params::new(96, 1, 1, None).unwrap(),
            ),
        ];
        for (algorithm, version, params) in cases {
            let phc = Argon2::new(algorithm, version, params)
                .hash_password_with_salt(b"right horse", &random_bytes::<16>())
                .unwrap()
                .to_string();
            let hash = argon2::password_hash::phc::PasswordHash::new(&phc).unwrap();
            for candidate in [&b"right horse"[..], b"wrong horse", b"", b"right horse "] {
                let theirs = Argon2::default().verify_password(candidate, &hash).is_ok();
                assert_eq!(
                    password_matches(candidate, &hash),
                    theirs,
                    "{phc} {candidate:?}"
                );
            }
            assert!(password_matches(b"right horse", &hash), "{phc}");
        }
        // A tampered output never matches.
        let phc = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"pw pw pw", &random_bytes::<16>())
        .unwrap()
        .to_string();
        let mut tampered = phc.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        if let Ok(hash) = argon2::password_hash::phc::PasswordHash::new(&tampered) {
            assert!(!password_matches(b"pw pw pw", &hash));
        }
        release_memory();
        MEMORY.with(|m| assert!(m.borrow().is_empty()));
    }

    fn small() -> PasswordHasher {
        PasswordHasher::start(HashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            threads: 1,
            queue: 4,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = small();
        let phc = h.hash(SecretString::from("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let ok = h
            .verify(SecretString::from("correct horse"), phc.clone())
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = h
            .verify(SecretString::from("wrong horse"), phc)
            .await
            .unwrap();
        assert!(!bad.matches);
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_ask_for_a_rehash() {
        let h = small();
        let other = PasswordHasher::start(HashSettings {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
            threads: 1,
            queue: 1,
        })
        .unwrap();
        let phc = other.hash(SecretString::from("pw")).await.unwrap();
        let v = h.verify(SecretString::from("pw"), phc).await.unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[test]
    fn the_dummy_hash_is_well_formed() {
        let params = Params::new(19456, 2, 1, None).unwrap();
        let d = dummy_hash(&params);
        assert!(
            argon2::password_hash::phc::PasswordHash::new(&d).is_ok(),
            "{d}"
        );
        assert!(
            !verify_now(
                &Params::new(64, 1, 1, None).unwrap(),
                "",
                &dummy_hash(&Params::new(64, 1, 1, None).unwrap())
            )
            .matches
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let h = PasswordHasher::start(HashSettings {
            memory_kib: 8192,
            iterations: 4,
            parallelism: 1,
            threads: 1,
            queue: 0,
        })
        .unwrap();
        let busy = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(SecretString::from("a")).await })
        };
        // Wait until the first job holds the only slot.
        while h.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            h.hash(SecretString::from("b")).await,
            Err(HashError::Overloaded)
        ));
        assert!(busy.await.unwrap().is_ok());
    }
}
