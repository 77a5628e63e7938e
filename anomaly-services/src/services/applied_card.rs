//! A card's feature state together with the position of the last record applied to it, so a
//! replayed record (consumed again after a crash, before its offset was committed) is
//! recognised and skipped: each transaction counts in its card's windows exactly once.
//!
//! A card always lives on one partition (it is the Kafka key), so one position per card is
//! enough. If the topic's partition count changes, a card's records arrive on a new partition:
//! positions on different partitions are not comparable, and the first record from the new
//! partition is applied and becomes the card's position.

use anomaly_core::features::{CardState, Compact, DecodeError};

/// Where a record was read: its partition and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    /// The partition.
    pub partition: i32,
    /// The offset in it.
    pub offset: i64,
}

/// A card's state and the last record applied to it.
///
/// ```
/// use anomaly_services::services::applied_card::{AppliedCard, SourcePosition};
///
/// let mut card = AppliedCard::default();
/// let at = SourcePosition { partition: 2, offset: 41 };
/// assert!(!card.holds(at));
/// card.mark(at);
/// assert!(card.holds(at) && card.holds(SourcePosition { partition: 2, offset: 7 }));
/// assert!(!card.holds(SourcePosition { partition: 2, offset: 42 }));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppliedCard {
    /// The card's windows and history.
    pub card: CardState,
    /// The last record applied, if any is known.
    pub applied: Option<SourcePosition>,
}

/// First byte of the encoding with a position. Plain [`CardState`] encodings start with the
/// core's format version (1), so states written before positions existed still decode.
const WITH_POSITION: u8 = 0xA7;
const POSITION_BYTES: usize = 1 + 4 + 8;

impl AppliedCard {
    /// Whether the record at `at` is already part of the state.
    pub fn holds(&self, at: SourcePosition) -> bool {
        self.applied
            .is_some_and(|a| a.partition == at.partition && at.offset <= a.offset)
    }

    /// Records that the record at `at` was applied.
    pub fn mark(&mut self, at: SourcePosition) {
        self.applied = Some(at);
    }
}

impl Compact for AppliedCard {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Some(at) = self.applied {
            out.push(WITH_POSITION);
            out.extend_from_slice(&at.partition.to_le_bytes());
            out.extend_from_slice(&at.offset.to_le_bytes());
        }
        self.card.encode(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.first() != Some(&WITH_POSITION) {
            return Ok(Self {
                card: CardState::decode(bytes)?,
                applied: None,
            });
        }
        let (Some(partition), Some(offset)) = (bytes.get(1..5), bytes.get(5..POSITION_BYTES))
        else {
            return Err(DecodeError::Truncated {
                offset: bytes.len(),
                what: "applied record position",
            });
        };
        let mut p = [0u8; 4];
        p.copy_from_slice(partition);
        let mut o = [0u8; 8];
        o.copy_from_slice(offset);
        Ok(Self {
            card: CardState::decode(&bytes[POSITION_BYTES..])?,
            applied: Some(SourcePosition {
                partition: i32::from_le_bytes(p),
                offset: i64::from_le_bytes(o),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_a_position() {
        let mut card = AppliedCard::default();
        assert_eq!(AppliedCard::decode(&card.to_bytes()).unwrap(), card);
        card.mark(SourcePosition {
            partition: 5,
            offset: i64::MAX - 3,
        });
        assert_eq!(AppliedCard::decode(&card.to_bytes()).unwrap(), card);
    }

    #[test]
    fn states_stored_before_positions_still_decode() {
        let old = CardState::default().to_bytes();
        let card = AppliedCard::decode(&old).unwrap();
        assert_eq!(card.applied, None);
        assert_eq!(card.card, CardState::default());
    }

    #[test]
    fn truncated_positions_are_errors_not_panics() {
        let mut card = AppliedCard::default();
        card.mark(SourcePosition {
            partition: 1,
            offset: 9,
        });
        let bytes = card.to_bytes();
        for cut in 0..bytes.len() {
            assert!(AppliedCard::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn another_partition_is_not_comparable() {
        let mut card = AppliedCard::default();
        card.mark(SourcePosition {
            partition: 0,
            offset: 100,
        });
        assert!(!card.holds(SourcePosition {
            partition: 1,
            offset: 3
        }));
    }
}
