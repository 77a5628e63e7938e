//! Versioned, checksummed model snapshots, in JSON (readable) or a compact binary form.
//!
//! A snapshot carries the snapshot format version, the model's own version number (bumped by
//! whoever publishes models), the model with its parameters, and a CRC-32 of the model's
//! encoding. Loading checks all of it and then validates the model itself (tree shapes,
//! finite thresholds, masses consistent with the window), so corrupted or hostile bytes give
//! a [`SnapshotError`], never a panic and never a half-valid model.
//!
//! ```
//! use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams};
//! use anomaly_core::snapshot::{Model, Snapshot};
//!
//! let mut hst = HalfSpaceTrees::with_features(HstParams { seed: Some(1), ..HstParams::default() }, &["a", "b"])?;
//! hst.score(&[0.2, 0.4][..])?.learn();
//!
//! let bytes = Snapshot::new(7, Model::Hst(hst.clone())).to_bytes();
//! let restored = Snapshot::from_bytes(&bytes)?;
//! assert_eq!(restored.model_version, 7);
//! assert_eq!(restored.model, Model::Hst(hst));
//!
//! let mut corrupted = bytes.clone();
//! corrupted[40] ^= 0xff;
//! assert!(Snapshot::from_bytes(&corrupted).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Binary layout (little-endian): `b"ANOMSNAP"`, format version `u16`, model version `u64`,
//! payload length `u64`, payload (the model in `postcard` encoding), CRC-32 (IEEE) `u32` of
//! everything before it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::anomaly::{
    Ensemble, GaussianScorer, HalfSpaceTrees, LinearRegression, LocalOutlierFactor, Loda,
    MinMaxScaled, OneClassSvm, PredictiveAnomalyDetection, RandomCutForest, Sad,
};

/// The snapshot format this crate writes. It also reads version 1, written before the
/// ensemble could take on further detectors.
pub const FORMAT_VERSION: u16 = 2;

/// The oldest snapshot format this crate reads.
pub const OLDEST_FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 8] = b"ANOMSNAP";
const HEADER_LEN: usize = 8 + 2 + 8 + 8;
/// JSON snapshots say what they are, so a wrong file is recognised at once.
const JSON_FORMAT_NAME: &str = "anomaly-core.model";

/// A model that can be snapshotted.
// Boxing the larger variants would add an allocation and noise to every match for nothing: a
// `Model` exists once per snapshot taken or loaded.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Model {
    /// HalfSpaceTrees.
    Hst(HalfSpaceTrees),
    /// StandardAbsoluteDeviation.
    Sad(Sad),
    /// The HST + SAD ensemble.
    Ensemble(Ensemble),
    /// GaussianScorer.
    Gaussian(GaussianScorer),
    /// LocalOutlierFactor.
    Lof(LocalOutlierFactor),
    /// OneClassSVM.
    OneClassSvm(OneClassSvm),
    /// LODA.
    Loda(Loda),
    /// PredictiveAnomalyDetection over min-max scaled linear regression (River's default).
    Pad(PredictiveAnomalyDetection<MinMaxScaled<LinearRegression>>),
    /// PredictiveAnomalyDetection over plain linear regression.
    PadLinear(PredictiveAnomalyDetection<LinearRegression>),
    /// Random Cut Forest.
    Rcf(RandomCutForest),
}

impl Model {
    /// Checks what serde cannot: a loaded PAD's predictor against its features.
    fn validated(self) -> Result<Self, SnapshotError> {
        let ok = match &self {
            Model::Pad(pad) => pad.is_valid(),
            Model::PadLinear(pad) => pad.is_valid(),
            _ => true,
        };
        if ok {
            Ok(self)
        } else {
            Err(SnapshotError::Invalid(
                "the predictor does not match the detector's features".into(),
            ))
        }
    }
}

/// A model with its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The model's version number, as assigned by whoever trains and publishes models.
    pub model_version: u64,
    /// The model, with its parameters and learned state.
    pub model: Model,
}

/// Why a snapshot was rejected.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The bytes do not start like a snapshot.
    #[error(
        "not a model snapshot (bad magic bytes); expected a file written by Snapshot::to_bytes"
    )]
    BadMagic,
    /// The bytes end before the snapshot does.
    #[error("snapshot truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the header announced.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// Written by an unknown (newer) format.
    #[error(
        "snapshot format version {found} is not supported (this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade anomaly-core"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The checksum does not match: the bytes were altered.
    #[error(
        "snapshot checksum mismatch (stored {stored:08x}, computed {computed:08x}): the snapshot is corrupted"
    )]
    Checksum {
        /// Checksum stored in the snapshot.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The payload does not decode, or decodes to an invalid model.
    #[error("snapshot payload is invalid: {0}")]
    Invalid(String),
}

#[derive(Serialize)]
struct JsonOut<'a> {
    format: &'a str,
    format_version: u16,
    model_version: u64,
    checksum: String,
    model: &'a Model,
}

#[derive(Deserialize)]
struct JsonIn {
    format: String,
    format_version: u16,
    model_version: u64,
    checksum: String,
    model: serde_json::Value,
}

impl Snapshot {
    /// A snapshot of `model` as version `model_version`.
    pub fn new(model_version: u64, model: Model) -> Self {
        Self {
            model_version,
            model,
        }
    }

    /// The compact binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail; an empty payload would be rejected
        // on load rather than accepted silently.
        let payload = postcard::to_stdvec(&self.model).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.model_version.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and validates the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        let model_version = u64::from_le_bytes(array(&bytes[10..18]));
        let payload_len = u64::from_le_bytes(array(&bytes[18..26]));
        let needed = usize::try_from(payload_len)
            .ok()
            .and_then(|len| len.checked_add(HEADER_LEN + 4))
            .unwrap_or(usize::MAX);
        if bytes.len() < needed {
            return Err(SnapshotError::Truncated {
                needed,
                got: bytes.len(),
            });
        }
        let body = &bytes[..needed - 4];
        let stored = u32::from_le_bytes(array(&bytes[needed - 4..needed]));
        let computed = crc32(body);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let payload = &body[HEADER_LEN..];
        let invalid = |e: postcard::Error| SnapshotError::Invalid(e.to_string());
        let model = if version == 1 {
            postcard::from_bytes::<v1::Model>(payload)
                .map_err(invalid)?
                .upgrade()?
        } else {
            postcard::from_bytes::<Model>(payload).map_err(invalid)?
        }
        .validated()?;
        Ok(Self {
            model_version,
            model,
        })
    }

    /// The JSON form (pretty for reading, or compact).
    pub fn to_json(&self, pretty: bool) -> String {
        let checksum = format!(
            "crc32:{:08x}",
            crc32(canonical_json(&self.model).as_bytes())
        );
        let out = JsonOut {
            format: JSON_FORMAT_NAME,
            format_version: FORMAT_VERSION,
            model_version: self.model_version,
            checksum,
            model: &self.model,
        };
        let text = if pretty {
            serde_json::to_string_pretty(&out)
        } else {
            serde_json::to_string(&out)
        };
        text.unwrap_or_default()
    }

    /// Reads and validates the JSON form.
    ///
    /// ```
    /// use anomaly_core::anomaly::Sad;
    /// use anomaly_core::snapshot::{Model, Snapshot};
    ///
    /// let json = Snapshot::new(3, Model::Sad(Sad::default())).to_json(true);
    /// assert_eq!(Snapshot::from_json(&json)?.model_version, 3);
    /// assert!(Snapshot::from_json(&json.replace("\"Mean\"", "\"Median\"")).is_err());
    /// # Ok::<(), anomaly_core::snapshot::SnapshotError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        let raw: JsonIn =
            serde_json::from_str(text).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        if raw.format != JSON_FORMAT_NAME {
            return Err(SnapshotError::BadMagic);
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&raw.format_version) {
            return Err(SnapshotError::UnsupportedVersion {
                found: raw.format_version,
            });
        }
        let invalid = |e: serde_json::Error| SnapshotError::Invalid(e.to_string());
        // The checksum covers the model as the writing version encoded it.
        let (model, computed) = if raw.format_version == 1 {
            let old: v1::Model = serde_json::from_value(raw.model).map_err(invalid)?;
            let computed = crc32(serde_json::to_string(&old).unwrap_or_default().as_bytes());
            (old.upgrade()?, computed)
        } else {
            let model: Model = serde_json::from_value(raw.model).map_err(invalid)?;
            let computed = crc32(canonical_json(&model).as_bytes());
            (model, computed)
        };
        let stored = raw
            .checksum
            .strip_prefix("crc32:")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| {
                SnapshotError::Invalid(format!("bad checksum field `{}`", raw.checksum))
            })?;
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        Ok(Self {
            model_version: raw.model_version,
            model: model.validated()?,
        })
    }
}

/// The model's compact JSON: deterministic (fixed field order, ordered maps, shortest
/// round-trip floats), so it can be checksummed after a parse.
fn canonical_json(model: &Model) -> String {
    serde_json::to_string(model).unwrap_or_default()
}

/// Format version 1: the same models, but an ensemble had no members.
mod v1 {
    use serde::{Deserialize, Serialize};

    use super::SnapshotError;
    use crate::anomaly::{
        Ensemble, EnsembleParams, EnsembleState, HalfSpaceTrees, HstParams, Sad, SadParams,
    };

    #[allow(clippy::large_enum_variant)]
    #[derive(Serialize, Deserialize)]
    pub(super) enum Model {
        Hst(HalfSpaceTrees),
        Sad(Sad),
        Ensemble(EnsembleV1),
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct EnsembleV1 {
        params: ParamsV1,
        sad_column: usize,
        hst: HalfSpaceTrees,
        sad: Sad,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ParamsV1 {
        hst: HstParams,
        sad: SadParams,
        sad_feature: String,
        hst_weight: f64,
        sad_weight: f64,
        sad_grace_period: u32,
    }

    impl Model {
        pub(super) fn upgrade(self) -> Result<super::Model, SnapshotError> {
            Ok(match self {
                Model::Hst(m) => super::Model::Hst(m),
                Model::Sad(m) => super::Model::Sad(m),
                Model::Ensemble(e) => {
                    let p = e.params;
                    let state = EnsembleState {
                        params: EnsembleParams {
                            hst: p.hst,
                            sad: p.sad,
                            sad_feature: p.sad_feature,
                            hst_weight: p.hst_weight,
                            sad_weight: p.sad_weight,
                            sad_grace_period: p.sad_grace_period,
                            members: Vec::new(),
                        },
                        sad_column: e.sad_column,
                        hst: e.hst,
                        sad: e.sad,
                        members: Vec::new(),
                    };
                    super::Model::Ensemble(
                        Ensemble::try_from(state).map_err(SnapshotError::Invalid)?,
                    )
                }
            })
        }
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn crc32_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
