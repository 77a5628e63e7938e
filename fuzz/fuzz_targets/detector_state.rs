//! Feeds arbitrary model payloads, framed as valid snapshots (header and checksum computed
//! here, so the fuzzer explores the model decoder and its validation rather than the CRC),
//! to the loader. Whatever loads must survive a round trip, and the River detectors added with
//! the anomaly module (GaussianScorer, LOF, OneClassSVM, LODA, PAD) and the Random Cut Forest
//! must then score and learn
//! events without panicking and never score NaN.
#![no_main]

use anomaly_core::anomaly::AnomalyDetector;
use anomaly_core::snapshot::{FORMAT_VERSION, Model, Snapshot, crc32};
use libfuzzer_sys::fuzz_target;

const EVENTS: [[f64; 3]; 4] = [[0.0, 0.5, 1.0], [1e9, -1e9, 0.0], [0.5, 0.5, 0.5], [-3.0, 2.0, 7.5]];

fn named(row: &[f64; 3]) -> [(&'static str, f64); 3] {
    [("f0", row[0]), ("f1", row[1]), ("f2", row[2])]
}

/// `payload` in a snapshot frame: magic, format version, model version, length, CRC-32.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = b"ANOMSNAP".to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fuzz_target!(|payload: &[u8]| {
    let Ok(snapshot) = Snapshot::from_bytes(&framed(payload)) else {
        return;
    };
    let again = Snapshot::from_bytes(&snapshot.to_bytes()).expect("re-encoded snapshot loads");
    assert_eq!(again, snapshot);
    // Scores (checked with `$defined`) and learns every event with a loaded model.
    macro_rules! exercise {
        ($model:expr, $defined:expr) => {
            for row in &EVENTS {
                if let Ok(s) = $model.score_named(named(row)) {
                    assert!($defined(s.score()), "NaN score");
                    s.learn();
                }
            }
        };
    }
    let finite = |v: f64| !v.is_nan();
    let finite_or_undefined = |v: Result<f64, _>| v.map_or(true, |v: f64| !v.is_nan());
    match snapshot.model {
        Model::Gaussian(mut m) => {
            for row in &EVENTS {
                if let Ok(s) = m.score(&row[0]) {
                    assert!(finite_or_undefined(s.score()), "NaN score");
                    s.learn();
                }
            }
        }
        Model::Lof(mut m) => exercise!(m, finite),
        Model::OneClassSvm(mut m) => exercise!(m, finite),
        Model::Loda(mut m) => exercise!(m, finite),
        Model::Pad(mut m) => exercise!(m, finite_or_undefined),
        Model::PadLinear(mut m) => exercise!(m, finite_or_undefined),
        Model::Rcf(mut m) => {
            let width = m.features().len();
            for row in &EVENTS {
                let row: Vec<f64> = row.iter().copied().cycle().take(width).collect();
                if let Ok(s) = m.score(&row[..]) {
                    assert!(finite(s.score()), "NaN score");
                    let _ = s.explain();
                    s.learn();
                }
            }
        }
        _ => {}
    }
});
