//! The main job's loop: 50,000 synthetic transactions through all six stages in one process.
//!
//! `cargo bench -p anomaly-services --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use anomaly_services::pipeline::{PipelineConfig, run};

fn embedded_pipeline(c: &mut Criterion) {
    let mut config = PipelineConfig::default();
    config.generator.events = 50_000;
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(config.generator.events));
    group.bench_function("embedded_50k", |b| {
        b.iter(|| black_box(run(&config, |_, _| {}).map(|r| r.scored.len())))
    });
    group.finish();
}

criterion_group!(benches, embedded_pipeline);
criterion_main!(benches);
