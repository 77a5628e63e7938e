//! One million updates of each drift detector (River's figures are in docs/BENCHMARKS.md).
//!
//! `cargo bench -p anomaly-core --bench drift`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod workloads;
use workloads::{DRIFT_WORKLOADS, DriftInputs};

const UPDATES: usize = 1_000_000;

fn drift_detectors(c: &mut Criterion) {
    let inputs = DriftInputs::new(UPDATES);
    let mut group = c.benchmark_group("drift_1M_updates");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.sample_size(10);
    for name in DRIFT_WORKLOADS {
        group.bench_function(name, |b| b.iter(|| black_box(inputs.run(black_box(name)))));
    }
    group.finish();
}

criterion_group!(benches, drift_detectors);
criterion_main!(benches);
