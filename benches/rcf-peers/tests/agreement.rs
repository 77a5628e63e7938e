//! Our forest and AWS's (`krcflib`) on the same fixed inputs agree statistically: the same
//! scale for ordinary points and for injected anomalies, and both attributions name the
//! feature that was perturbed.

use rcf_peers::{Aws, Forest, Ours, Shape};

const DIM: usize = 4;

fn uniform(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

struct Probe {
    ordinary: Vec<Vec<f64>>,
    anomalies: Vec<(usize, Vec<f64>)>,
}

fn inputs() -> (Vec<Vec<f64>>, Probe) {
    let mut state = 2026;
    let point = |state: &mut u64| (0..DIM).map(|_| uniform(state)).collect::<Vec<f64>>();
    let history = (0..3000).map(|_| point(&mut state)).collect();
    let ordinary = (0..200).map(|_| point(&mut state)).collect();
    let anomalies = (0..200)
        .map(|i| {
            let feature = i % DIM;
            let mut p = point(&mut state);
            p[feature] += if i % 2 == 0 { 3.0 } else { -3.0 };
            (feature, p)
        })
        .collect();
    (
        history,
        Probe {
            ordinary,
            anomalies,
        },
    )
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn ours_and_aws_agree_on_scores_and_attributions() {
    let (history, probe) = inputs();
    let shape = Shape {
        dim: DIM,
        trees: 50,
        sample_size: 256,
        seed: 7,
    };
    let mut ours = Ours::new(shape);
    let mut aws = Aws::new(shape);
    for p in &history {
        ours.learn(p);
        aws.learn(p);
    }
    let ordinary = (
        mean(probe.ordinary.iter().map(|p| ours.score(p))),
        mean(probe.ordinary.iter().map(|p| aws.score(p))),
    );
    let anomalous = (
        mean(probe.anomalies.iter().map(|(_, p)| ours.score(p))),
        mean(probe.anomalies.iter().map(|(_, p)| aws.score(p))),
    );
    // Same algorithm, different random streams: the means agree within 15%.
    for (what, (a, b)) in [("ordinary", ordinary), ("anomalous", anomalous)] {
        assert!((a - b).abs() <= 0.15 * b, "{what}: ours {a:.3}, AWS {b:.3}");
    }
    assert!(
        ordinary.0 < 1.2 && anomalous.0 > 2.0 * ordinary.0,
        "{ordinary:?} {anomalous:?}"
    );

    let mut ours_right = 0;
    let mut aws_right = 0;
    for (feature, p) in &probe.anomalies {
        let ours_top = {
            use anomaly_core::anomaly::AnomalyDetector;
            let mut forest = ours.forest().clone();
            let scored = forest.score(p).expect("a valid row");
            scored.explain()[0].feature.clone()
        };
        ours_right += usize::from(ours_top == format!("f{feature}"));
        let parts = aws.attribution(p);
        let top = (0..DIM)
            .max_by(|&a, &b| {
                let (x, y) = (parts[a].0 + parts[a].1, parts[b].0 + parts[b].1);
                x.total_cmp(&y)
            })
            .unwrap_or(0);
        aws_right += usize::from(top == *feature);
    }
    let n = probe.anomalies.len();
    assert!(
        ours_right * 100 >= n * 95,
        "ours named the feature {ours_right} of {n} times"
    );
    assert!(
        aws_right * 100 >= n * 95,
        "AWS named the feature {aws_right} of {n} times"
    );
}
