//! HalfSpaceTrees, SAD and the min-max scaler, score-then-learn from a fresh model
//! (River's figures are in docs/BENCHMARKS.md).
//!
//! `cargo bench -p anomaly-core --bench anomaly`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod workloads;
use workloads::{Prepared, generate};

fn anomaly_detectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("anomaly");
    group.sample_size(10);
    for (name, events) in [
        ("hst_10_8", 100_001),
        ("hst_25_15", 20_001),
        ("sad", 1_000_001),
        ("minmax", 1_000_001),
    ] {
        let Some(input) = generate(name, events) else {
            continue;
        };
        let Some(prepared) = Prepared::new(name, &input) else {
            continue;
        };
        group.throughput(Throughput::Elements(prepared.events() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || prepared.fresh(),
                |mut runner| black_box(runner.run()),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, anomaly_detectors);
criterion_main!(benches);
