//! Measures the time of one password verification as portvakt performs it (argon2id with the
//! configured parameters on the hashing pool), to compute the login throughput ceiling
//! (cores / seconds per hash) in `bench/`.
//!
//! Usage: hash_cost [ITERATIONS]   (default 40). Reads PORTVAKT_ARGON2_* like the service.

use std::time::Instant;

use portvakt::Config;
use portvakt::crypto::password::{HashSettings, PasswordHasher};
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(40);
    let config = Config::load(None)?;
    let hasher = PasswordHasher::start(HashSettings {
        memory_kib: config.argon2_memory_kib,
        iterations: config.argon2_iterations,
        parallelism: config.argon2_parallelism,
        threads: 1,
        queue: 1,
    })?;
    let stored = hasher
        .hash(SecretString::from("benchmark password 1"))
        .await?;
    // Warm up page tables and caches once.
    hasher
        .verify(SecretString::from("x"), stored.clone())
        .await?;
    let started = Instant::now();
    for _ in 0..iterations {
        hasher
            .verify(SecretString::from("benchmark password 1"), stored.clone())
            .await?;
    }
    let per_hash = started.elapsed().as_secs_f64() / f64::from(iterations);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "{{\"seconds_per_hash\": {per_hash:.6}, \"cores\": {cores}, \"ceiling_per_second\": {:.1}}}",
        cores as f64 / per_hash
    );
    Ok(())
}
