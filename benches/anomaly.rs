//! HalfSpaceTrees and SAD, score-then-learn (River's figures are in docs/BENCHMARKS.md).
//!
//! `cargo bench -p anomaly-core --bench anomaly`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod workloads;

const FEATURES: usize = 8;

fn half_space_trees(c: &mut Criterion) {
    let events = 100_000;
    let rows = workloads::rows(events, FEATURES, 4);
    let mut group = c.benchmark_group("hst_score_learn_100k");
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    for (name, n_trees, height) in [("hst_10_8", 10, 8), ("hst_25_15", 25, 15)] {
        // One model across iterations: after the first window, every iteration measures the
        // steady state (the first window only learns).
        let mut model = workloads::hst(n_trees, height);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(workloads::score_learn(
                    &mut model,
                    black_box(&rows),
                    FEATURES,
                ))
            })
        });
    }
    group.finish();
}

fn sad(c: &mut Criterion) {
    let events = 1_000_000;
    let values = workloads::normal(events, 5);
    let mut group = c.benchmark_group("sad_1M");
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    group.bench_function("sad", |b| {
        b.iter(|| black_box(workloads::sad(black_box(&values))))
    });
    group.finish();
}

criterion_group!(benches, half_space_trees, sad);
criterion_main!(benches);
