//! Streaming-feature throughput: sliding-window updates for one key and spread over 100k keys
//! (in-memory store), min-max scaling of 8-feature rows (River's `MinMaxScaler` does about
//! 1-2 M rows/s), and the transaction feature set. Inputs are generated once, before timing,
//! from a seeded ChaCha generator.
//!
//! `cargo bench -p anomaly-core --bench features`

use anomaly_core::features::{
    CardState, Compact, FeatureStore, InMemoryStore, MinMaxScaler, SlidingWindow, Transaction,
    WindowParams, WindowSpan,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::hint::black_box;

const UPDATES: usize = 1_000_000;
const KEYS: usize = 100_000;

fn window(span: WindowSpan, allowed_lateness_ms: u64) -> SlidingWindow {
    SlidingWindow::new(WindowParams {
        span,
        allowed_lateness_ms,
    })
    .expect("valid parameters")
}

/// Amounts: log-normal-ish, 1 to ~1000.
fn amounts(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| (rng.random::<f64>() * 7.0).exp()).collect()
}

fn windows(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let values = amounts(UPDATES, &mut rng);
    // 1% of events arrive up to 500 ms late (within the allowed lateness).
    let late: Vec<i64> = (0..UPDATES)
        .map(|_| {
            if rng.random::<f64>() < 0.01 {
                rng.random_range(1..500)
            } else {
                0
            }
        })
        .collect();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("card-{i:06}")).collect();
    let key_of: Vec<usize> = (0..UPDATES).map(|_| rng.random_range(0..KEYS)).collect();

    let mut group = c.benchmark_group("window_1M_updates");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.sample_size(10);

    // One event every 10 ms: the 1-minute window retains 6,000 events.
    let cases = [
        (
            "one_key_last_60s",
            WindowSpan::Time { millis: 60_000 },
            false,
        ),
        (
            "one_key_last_100_events",
            WindowSpan::Events { count: 100 },
            false,
        ),
        (
            "one_key_last_100_events_1pct_late",
            WindowSpan::Events { count: 100 },
            true,
        ),
    ];
    for (name, span, with_late) in cases {
        let mut w = window(span, 1_000);
        let mut clock = 0i64;
        group.bench_function(name, |b| {
            b.iter(|| {
                for (i, &x) in values.iter().enumerate() {
                    let t = clock + 10 * i as i64 - if with_late { late[i] } else { 0 };
                    let _ = black_box(w.push(t, x));
                }
                clock += 10 * UPDATES as i64;
                black_box(w.summary().mean())
            })
        });
    }

    // 100k keys in an InMemoryStore, random key order: about 10 events per key per pass and
    // an hour window, so each update also reads the key's summary as a feature pipeline would.
    let mut store = InMemoryStore::new(window(WindowSpan::Time { millis: 3_600_000 }, 1_000));
    let mut clock = 0i64;
    group.bench_function("100k_keys_in_memory_store_last_1h", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for (i, &x) in values.iter().enumerate() {
                let t = clock + i as i64;
                acc += store
                    .update(&keys[key_of[i]], |w| {
                        let _ = w.push(t, x);
                        w.summary().mean()
                    })
                    .unwrap_or_default();
            }
            clock += UPDATES as i64;
            black_box(acc)
        })
    });

    // The floor for any per-key store on this machine: one `HashMap<String, u64>` increment
    // per event, same key sequence. Random access to 100k keys is memory-bound.
    let mut counts: HashMap<String, u64> = keys.iter().map(|k| (k.clone(), 0)).collect();
    group.bench_function("100k_keys_hashmap_increment_floor", |b| {
        b.iter(|| {
            for &k in &key_of {
                if let Some(c) = counts.get_mut(&keys[k]) {
                    *c += 1;
                }
            }
        })
    });
    group.finish();
}

fn scaler(c: &mut Criterion) {
    const FEATURES: usize = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let rows: Vec<f64> = (0..UPDATES * FEATURES)
        .map(|_| rng.random::<f64>() * 100.0 - 50.0)
        .collect();
    let mut group = c.benchmark_group("min_max_scaler_1M_rows_8_features");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.sample_size(10);
    group.bench_function("learn_transform", |b| {
        let mut out = [0.0; FEATURES];
        b.iter(|| {
            let mut scaler = MinMaxScaler::new(FEATURES).expect("valid parameters");
            let mut acc = 0.0;
            for row in rows.chunks_exact(FEATURES) {
                if scaler.learn_transform(row, &mut out).is_ok() {
                    acc += out[0];
                }
            }
            black_box(acc)
        })
    });
    group.finish();
}

fn transactions(c: &mut Criterion) {
    const TXS: usize = 200_000;
    const CARDS: usize = 10_000;
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let amounts = amounts(TXS, &mut rng);
    let txs: Vec<Transaction> = (0..TXS)
        .map(|i| Transaction {
            event_id: format!("e{i}"),
            card_id: format!("card-{}", rng.random_range(0..CARDS)),
            timestamp_ms: 1_700_000_000_000 + 1_000 * i as i64,
            amount: amounts[i],
            merchant: format!("m{}", rng.random_range(0..500)),
            category: format!("{}", 5_000 + rng.random_range(0..40)),
            latitude: rng.random_range(40.0..50.0),
            longitude: rng.random_range(-5.0..10.0),
        })
        .collect();
    let mut group = c.benchmark_group("transaction_features_200k_txs_10k_cards");
    group.throughput(Throughput::Elements(TXS as u64));
    group.sample_size(10);
    group.bench_function("in_memory_store", |b| {
        b.iter(|| {
            let mut store = InMemoryStore::new(CardState::default());
            let mut acc = 0.0;
            for tx in &txs {
                if let Ok(Ok(f)) = store.update(&tx.card_id, |card| card.update(tx)) {
                    acc += f.values()[0];
                }
            }
            black_box(acc)
        })
    });

    // What a remote store pays per event on top: encode and decode one card's state.
    let mut card = CardState::default();
    for tx in txs.iter().take(20) {
        let _ = card.update(&Transaction {
            card_id: "one".into(),
            ..tx.clone()
        });
    }
    let bytes = card.to_bytes();
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        format!("card_state_encode_decode_{}_bytes", bytes.len()),
        |b| b.iter(|| black_box(CardState::decode(&black_box(&card).to_bytes())).is_ok()),
    );
    group.finish();
}

criterion_group!(benches, windows, scaler, transactions);
criterion_main!(benches);
