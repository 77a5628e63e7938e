//! The compact binary encoding of feature state.
//!
//! Every encoding starts with two bytes, `[FORMAT_VERSION, kind]`, then the state's fields:
//! unsigned integers as LEB128 varints, signed ones zigzag-encoded first, floats as 8
//! little-endian bytes. Timestamps are delta-encoded (the first absolute, then the gaps, which
//! are never negative because events are kept in time order), so a retained event costs 8
//! bytes for its value plus usually 1 to 3 for its timestamp. Derived data (window
//! aggregates, min/max) is never stored: decoding rebuilds it with the same arithmetic, which
//! both keeps the bytes small and makes the decoded state continue bit-identically.
//!
//! Decoding never panics and never allocates more than the input's length justifies: a
//! truncated, corrupt or foreign byte string gives a [`DecodeError`], and anything that
//! decodes satisfies every invariant the state relies on.

use thiserror::Error;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be decoded into state. The bytes are not usable as they are: discard
/// the stored state (it will be rebuilt from new events) or re-encode it with a matching
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes end before the state does.
    #[error(
        "compact state: the bytes end at offset {offset} while reading {what}; store and load the whole encoding"
    )]
    Truncated {
        /// Where the input ended.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The bytes were written by an incompatible format version.
    #[error(
        "compact state: format version {found} cannot be read by this build (it reads version {supported}); re-encode the state with a matching anomaly-core or discard it"
    )]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The bytes hold a different kind of state.
    #[error(
        "compact state: expected a {expected} (kind {expected_tag}), found kind {found}; check that the key holds this kind of state"
    )]
    WrongKind {
        /// The kind of state asked for.
        expected: &'static str,
        /// Its tag.
        expected_tag: u8,
        /// The tag found.
        found: u8,
    },
    /// A field has an impossible value: the bytes are corrupt.
    #[error(
        "compact state: invalid {what} at offset {offset}: {reason}; the bytes are corrupt, discard the state"
    )]
    Invalid {
        /// Offset just after the field.
        offset: usize,
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes remain after the state.
    #[error(
        "compact state: {count} unexpected bytes after the end of the state; store exactly the bytes `to_bytes` returned"
    )]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
}

/// State with a compact, versioned binary encoding, meant to travel to an external store on
/// every event.
///
/// ```
/// use anomaly_core::features::{Compact, DecodeError, SlidingWindow};
///
/// let mut window = SlidingWindow::default();
/// window.push(1_000, 12.5)?;
/// window.push(2_000, 7.5)?;
/// let bytes = window.to_bytes();
/// assert!(bytes.len() < 40);
/// let restored = SlidingWindow::decode(&bytes)?;
/// assert_eq!(restored, window);
/// assert!(matches!(
///     SlidingWindow::decode(&bytes[..bytes.len() - 1]),
///     Err(DecodeError::Truncated { .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Compact: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Decodes state from exactly `bytes`; never panics.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// The encoding of `self` in a new buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Kind tags of the encoded states.
pub(crate) const KIND_WINDOW: u8 = 1;
pub(crate) const KIND_CARD: u8 = 2;

pub(crate) fn put_header(out: &mut Vec<u8>, kind: u8) {
    out.push(FORMAT_VERSION);
    out.push(kind);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Decimal scales tried for the values of an event list: amounts with up to 4 decimals are
/// stored as varint integers (`25.37` takes 2 bytes instead of 8).
const DECIMAL_SCALES: [f64; 5] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0];
/// Integers beyond 2^53 are not all representable as `f64`.
const MAX_SCALED: f64 = 9_007_199_254_740_992.0;

/// `Some(c)` when `v == c / scale` exactly (bit for bit, so `-0.0` does not qualify).
fn scaled(v: f64, scale: f64) -> Option<i64> {
    let c = (v * scale).round();
    if c.abs() > MAX_SCALED {
        return None;
    }
    let c = c as i64;
    ((c as f64 / scale).to_bits() == v.to_bits()).then_some(c)
}

/// Writes time-ordered events: their count, the first timestamp (zigzag) and the gaps
/// (varints), a value mode byte, then the values (0: raw little-endian `f64`; `k + 1`: zigzag
/// varints of `value * 10^k`, chosen when every value round-trips exactly).
pub(crate) fn put_events<I>(out: &mut Vec<u8>, events: I)
where
    I: ExactSizeIterator<Item = (i64, f64)> + Clone,
{
    put_varint(out, events.len() as u64);
    let mut prev: Option<i64> = None;
    for (t, _) in events.clone() {
        match prev {
            None => put_zigzag(out, t),
            // Time order makes the gap non-negative; any gap between two i64 fits in u64.
            Some(p) => put_varint(out, (i128::from(t) - i128::from(p)) as u64),
        }
        prev = Some(t);
    }
    if prev.is_none() {
        return;
    }
    let mode = DECIMAL_SCALES
        .iter()
        .position(|&scale| events.clone().all(|(_, v)| scaled(v, scale).is_some()));
    match mode.and_then(|k| Some((k, *DECIMAL_SCALES.get(k)?))) {
        Some((k, scale)) => {
            out.push(k as u8 + 1);
            for (_, v) in events {
                put_zigzag(out, scaled(v, scale).unwrap_or(0));
            }
        }
        None => {
            out.push(0);
            for (_, v) in events {
                put_f64(out, v);
            }
        }
    }
}

/// A cursor over encoded bytes whose every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads and checks `[version, kind]`.
    pub(crate) fn header(&mut self, kind: u8, name: &'static str) -> Result<(), DecodeError> {
        let version = self.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let found = self.u8("state kind")?;
        if found != kind {
            return Err(DecodeError::WrongKind {
                expected: name,
                expected_tag: kind,
                found,
            });
        }
        Ok(())
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn invalid(&self, what: &'static str, reason: &'static str) -> DecodeError {
        DecodeError::Invalid {
            offset: self.pos,
            what,
            reason,
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(DecodeError::Truncated {
                offset: self.pos,
                what,
            }),
        }
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(self.invalid(what, "varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.invalid(what, "varint longer than 10 bytes"))
    }

    pub(crate) fn zigzag(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let v = self.varint(what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint that must fit in `u32`.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| self.invalid(what, "does not fit in 32 bits"))
    }

    /// A length prefix for items of at least `min_item_bytes` bytes each; rejecting lengths
    /// the remaining input cannot hold keeps corrupt lengths from causing huge allocations.
    pub(crate) fn len(
        &mut self,
        what: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_item_bytes) <= self.remaining() => Ok(n),
            _ => Err(DecodeError::Truncated {
                offset: self.bytes.len(),
                what,
            }),
        }
    }

    pub(crate) fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        let end = self.pos.checked_add(8).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e)) {
            Some(chunk) => {
                let mut buf = [0u8; 8];
                buf.copy_from_slice(chunk);
                self.pos += 8;
                Ok(f64::from_le_bytes(buf))
            }
            None => Err(DecodeError::Truncated {
                offset: self.bytes.len(),
                what,
            }),
        }
    }

    /// A float that must be a valid input value (finite, magnitude at most 1e100).
    pub(crate) fn value(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        let v = self.f64(what)?;
        if super::is_valid_value(v) {
            Ok(v)
        } else {
            Err(self.invalid(what, "not a finite number of magnitude at most 1e100"))
        }
    }

    pub(crate) fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(self.f64(what)?.to_bits())
    }

    /// Reads what [`put_events`] wrote; timestamps come out in time order.
    pub(crate) fn events(&mut self) -> Result<Vec<(i64, f64)>, DecodeError> {
        // Each event takes at least a timestamp byte and a value byte.
        let n = self.len("event count", 2)?;
        let mut events = Vec::with_capacity(n);
        if n == 0 {
            return Ok(events);
        }
        let mut t = self.zigzag("timestamp")?;
        events.push((t, 0.0));
        for _ in 1..n {
            let gap = self.varint("timestamp gap")?;
            t = i64::try_from(i128::from(t) + i128::from(gap))
                .map_err(|_| self.invalid("timestamp gap", "timestamp overflows i64"))?;
            events.push((t, 0.0));
        }
        let mode = self.u8("value mode")?;
        for event in &mut events {
            event.1 = match mode {
                0 => self.value("event value")?,
                k => {
                    let scale = DECIMAL_SCALES
                        .get(usize::from(k) - 1)
                        .copied()
                        .ok_or_else(|| self.invalid("value mode", "unknown mode"))?;
                    let c = self.zigzag("event value")?;
                    if (c as f64).abs() > MAX_SCALED {
                        return Err(self.invalid("event value", "scaled value beyond 2^53"));
                    }
                    c as f64 / scale
                }
            };
        }
        Ok(events)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish().unwrap();
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000] {
            let mut out = Vec::new();
            put_zigzag(&mut out, v);
            assert_eq!(Reader::new(&out).zigzag("v").unwrap(), v);
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let eleven = [0xffu8; 11];
        assert!(matches!(
            Reader::new(&eleven).varint("v"),
            Err(DecodeError::Invalid { .. })
        ));
        let mut too_big = vec![0xffu8; 9];
        too_big.push(0x02);
        assert!(matches!(
            Reader::new(&too_big).varint("v"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80]).varint("v"),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn events_pick_the_smallest_exact_encoding() {
        let cases: [(&[f64], u8); 5] = [
            (&[1.0, 250.0, -3.0], 1),
            (&[25.37, 0.1, 1e6], 3),
            (&[0.0001, 2.5], 5),
            (&[0.1 + 0.2], 0),
            (&[-0.0], 0),
        ];
        for (values, mode) in cases {
            let events: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as i64 * 10 - 5, v))
                .collect();
            let mut out = Vec::new();
            put_events(&mut out, events.iter().copied());
            let mut r = Reader::new(&out);
            let back = r.events().unwrap();
            r.finish().unwrap();
            let bits =
                |e: &[(i64, f64)]| e.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&events), "{values:?}");
            // count byte, then one byte per small timestamp (first zigzag(-5), gaps of 10).
            let ts_bytes = 1 + (values.len() - 1);
            assert_eq!(out[1 + ts_bytes], mode, "{values:?}");
        }
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert!(matches!(
            Reader::new(&out).len("events", 8),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
