//! One million updates of each drift detector (River's figures are in docs/BENCHMARKS.md).
//!
//! `cargo bench -p anomaly-core --bench drift`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod workloads;
use workloads::{DRIFT_WORKLOADS, Prepared, generate};

fn drift_detectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("drift");
    group.sample_size(10);
    for name in DRIFT_WORKLOADS {
        // KSWIN does a KS test per update: a tenth of the events keeps its run short.
        let events = if name == "kswin" { 100_001 } else { 1_000_001 };
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
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, drift_detectors);
criterion_main!(benches);
