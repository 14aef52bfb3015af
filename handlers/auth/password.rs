//! argon2id password hashing, run off the async workers because it is
//! deliberately slow, and bounded because it is deliberately large: each
//! hash holds m = 19 MiB for its run, so a burst of sign-ins on an
//! unbounded blocking pool (512 threads) once took the server from 238 MiB
//! to 7.7 GiB. Here `at_once` threads of their own do every hash; a caller
//! who cannot start within `max_wait` is told to retry (503), and waiting
//! costs a future, not a thread or a hash's memory. Threads of their own,
//! not tokio's blocking pool: the allocator keeps a freed hash's memory in
//! the arena of the thread that ran it, and the blocking pool, handed one
//! job after another, ran them on new threads (776 MiB after 400 logins
//! with two at a time, measured with bench/logins.rs).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// How long a sign-in may wait for a free hasher before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// Every hasher was busy for `MAX_WAIT`: a retry in a moment may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once; retry shortly")]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// The service's password hasher: argon2id on `at_once` threads.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    max_wait: Duration,
}

impl Passwords {
    pub fn new(at_once: usize, max_wait: Duration) -> Self {
        let at_once = at_once.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..at_once {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || loop {
                    // The lock is held only to take a job, not to run it.
                    let job = queue.lock().map(|q| q.recv());
                    match job {
                        Ok(Ok(job)) => job(),
                        // Every `Passwords` is gone: so is the work.
                        _ => return,
                    }
                })
                .expect("a hasher thread starts");
        }
        Self {
            permits: Arc::new(Semaphore::new(at_once)),
            jobs,
            max_wait,
        }
    }

    /// Runs `work` on a hasher thread once one is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .expect("the semaphore is never closed");
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _held = permit;
                let _ = done.send(work());
            }))
            .expect("the hasher threads live as long as a sender");
        Ok(result.await.expect("hashing does not panic"))
    }

    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_blocking(&password)).await
    }

    /// Verifies against `phc`, or against the decoy when there is no user,
    /// so both paths do the same work. Returns false for the decoy.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        self.run(move || match phc {
            Some(phc) => verify_blocking(&password, &phc),
            None => {
                verify_blocking(&password, decoy_hash());
                false
            }
        })
        .await
    }
}

/// One hasher per core the process may use: hashing is CPU-bound, so more
/// at once only adds memory, not throughput.
pub fn default_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A hash of a password nobody knows, checked when the email is unknown so
/// that "no such user" costs the same time as "wrong password".
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_blocking("decoy password that matches nothing"))
}

thread_local! {
    /// This thread's argon2 memory, kept between hashes: allocated once,
    /// not 19 MiB from the allocator per hash (which glibc held on to:
    /// 396 MiB after 20 sign-ins on two threads, bench/logins.rs).
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2 with `params` over this thread's memory.
fn argon2_into(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < params.block_count() {
            memory.resize(params.block_count(), Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..])
            .is_ok()
    })
}

fn hash_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(&argon, &params, password.as_bytes(), salt_bytes, out)
            .then_some(())
            .ok_or(password_hash::Error::Password)
    })
    .expect("argon2 with default parameters hashes any input");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("default parameters are valid"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

/// Checks `password` against a PHC string with the parameters it names.
fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    argon2_into(&argon, &params, password.as_bytes(), salt_bytes, &mut out)
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Computes the decoy in the background so the first unknown-email login is
/// not slower than the rest. Delayed a little: on a cold start the CPU is
/// better spent answering the first request.
pub fn warm_up_soon() {
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        tokio::task::spawn_blocking(decoy_hash);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_who_cannot_start_in_time_is_told_to_retry() {
        let passwords = Passwords::new(1, Duration::from_millis(50));
        // The one hasher is taken for the test's length.
        let held = passwords.permits.clone().acquire_owned().await.unwrap();
        assert_eq!(passwords.hash("pw".into()).await, Err(Busy));
        drop(held);
        let phc = passwords.hash("correct horse 9".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            passwords
                .verify("correct horse 9".into(), Some(phc.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(
            passwords.verify("correct horse 8".into(), Some(phc)).await,
            Ok(false)
        );
        assert_eq!(passwords.verify("x".into(), None).await, Ok(false));
    }
}

#[cfg(test)]
mod compatibility {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    /// Hashes made by the argon2 crate's own API (every stored hash so far)
    /// verify here, and ours verify there: the reused memory changes where
    /// the work happens, not what it computes.
    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse 9", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking("correct horse 9", &theirs));
        assert!(!verify_blocking("correct horse 8", &theirs));
        let ours = hash_blocking("correct horse 9");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse 9", &parsed)
            .is_ok());
        // Hashes of other parameters (a cheaper one, argon2i) verify too.
        let cheap = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw pw pw 1", &salt)
        .unwrap()
        .to_string();
        assert!(verify_blocking("pw pw pw 1", &cheap));
        assert!(!verify_blocking("pw", "not a phc string"));
    }
}
