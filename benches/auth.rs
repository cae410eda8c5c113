//! Benchmarks of the account hot paths: Argon2id at the shipped parameters (how many
//! logins a core can check per second) and the session-token fingerprint used on every
//! authenticated request. Run with `cargo bench --bench auth`.

use criterion::{Criterion, criterion_group, criterion_main};
use postcast::domains::auth::config::AuthConfig;
use postcast::domains::auth::password::{Hasher, fingerprint, random_token};

fn argon2(c: &mut Criterion) {
    let cfg = AuthConfig::default();
    let hasher = Hasher::new(cfg.argon2_memory_kib, cfg.argon2_iterations, cfg.argon2_parallelism).unwrap();
    let phc = hasher.hash_now("correct horse battery").unwrap();
    let mut g = c.benchmark_group("argon2id_owasp");
    g.sample_size(20);
    g.bench_function("hash", |b| b.iter(|| hasher.hash_now("correct horse battery").unwrap()));
    g.bench_function("verify", |b| b.iter(|| hasher.verify_now("correct horse battery", &phc)));
    g.finish();
}

fn token(c: &mut Criterion) {
    let t = random_token();
    c.bench_function("session_token_fingerprint", |b| b.iter(|| fingerprint(&t)));
}

criterion_group!(benches, argon2, token);
criterion_main!(benches);
