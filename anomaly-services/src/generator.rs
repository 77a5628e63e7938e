//! Synthetic card transactions with ground-truth labels and named drift phases (the producer's
//! logic). The same seed gives the same stream, event for event.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ids::uuid_from;
use crate::messages::RawTransaction;

/// One stretch of the stream with its own behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Name shown in logs and reports.
    pub name: String,
    /// Share of all events, relative to the other phases' shares.
    pub share: f64,
    /// Multiplies every normal amount (a spending shift when not 1).
    pub amount_multiplier: f64,
    /// Probability that a transaction is fraudulent.
    pub fraud_rate: f64,
    /// Probability that a normal transaction uses a category outside the card's habits.
    pub new_category_rate: f64,
}

impl Phase {
    fn new(name: &str, share: f64, amount: f64, fraud: f64, new_category: f64) -> Self {
        Self {
            name: name.into(),
            share,
            amount_multiplier: amount,
            fraud_rate: fraud,
            new_category_rate: new_category,
        }
    }

    /// Normal behaviour, a spending shift, a fraud wave, then normal again.
    pub fn default_phases() -> Vec<Phase> {
        vec![
            Phase::new("normal", 0.35, 1.0, 0.005, 0.03),
            Phase::new("spending_shift", 0.2, 3.0, 0.005, 0.25),
            Phase::new("fraud_wave", 0.2, 1.0, 0.08, 0.03),
            Phase::new("normal_again", 0.25, 1.0, 0.005, 0.03),
        ]
    }
}

/// How the stream is drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorParams {
    /// Seed of everything random.
    pub seed: u64,
    /// Events in the whole stream (phases are shares of it).
    pub events: u64,
    /// Distinct cards.
    pub cards: u32,
    /// Mean event-time rate, transactions per second, over all cards.
    pub rate_per_second: f64,
    /// Event time of the first transaction, Unix milliseconds.
    pub start_ms: i64,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// What fraud looks like.
    #[serde(default, skip_serializing_if = "FraudStyle::is_blatant")]
    pub fraud: FraudStyle,
}

/// What fraud looks like in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FraudStyle {
    /// Every fraud is one transaction of 4-25 times the card's usual amount, in resaleable
    /// goods, in a random city: easy to see (ROC AUC ~0.99 with the default model).
    #[default]
    Blatant,
    /// Frauds that imitate the card's habits, in three patterns, each a short run of
    /// transactions on one card (all labelled fraud):
    /// * card testing (30%): 3-6 amounts of 0.50-5.00 in a row, in the card's usual
    ///   categories, at home: a burst of small charges checking that a stolen card works;
    /// * account takeover (35%): 2-4 transactions from a new city far from home, at 1-2.5
    ///   times the card's usual amount, half of them in the card's usual categories;
    /// * habit mimicry (35%): one purchase at home in a usual category, at 1.5-3 times the
    ///   usual amount: only its size and timing set it apart.
    Mimicry,
}

impl FraudStyle {
    fn is_blatant(&self) -> bool {
        *self == FraudStyle::Blatant
    }
}

impl std::str::FromStr for FraudStyle {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "blatant" => Ok(Self::Blatant),
            "mimicry" => Ok(Self::Mimicry),
            other => Err(format!(
                "the fraud style is blatant or mimicry, got {other}"
            )),
        }
    }
}

impl Default for GeneratorParams {
    fn default() -> Self {
        Self {
            seed: 42,
            events: 200_000,
            cards: 2_000,
            rate_per_second: 20.0,
            // 2026-01-01T00:00:00Z
            start_ms: 1_767_225_600_000,
            phases: Phase::default_phases(),
            fraud: FraudStyle::Blatant,
        }
    }
}

/// Where a phase starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseBoundary {
    /// Index (0-based) of the phase's first event.
    pub index: u64,
    /// The phase's name.
    pub name: String,
}

const CATEGORIES: [&str; 12] = [
    "grocery",
    "restaurant",
    "fuel",
    "pharmacy",
    "clothing",
    "transport",
    "utilities",
    "entertainment",
    "travel",
    "electronics",
    "jewelry",
    "gift_cards",
];
/// Categories fraudsters favour (resaleable goods).
const RISKY: [&str; 3] = ["electronics", "jewelry", "gift_cards"];
const CITIES: [(f64, f64); 8] = [
    (48.8566, 2.3522),
    (51.5074, -0.1278),
    (40.7128, -74.0060),
    (35.6762, 139.6503),
    (-33.8688, 151.2093),
    (52.5200, 13.4050),
    (41.9028, 12.4964),
    (19.4326, -99.1332),
];

#[derive(Clone, Debug)]
struct Card {
    id: String,
    home: (f64, f64),
    typical_amount: f64,
    habits: [usize; 3],
}

/// The stream: an iterator of [`RawTransaction`]s.
///
/// ```
/// use anomaly_services::generator::{Generator, GeneratorParams};
///
/// let params = GeneratorParams { events: 1_000, ..GeneratorParams::default() };
/// let a: Vec<_> = Generator::new(params.clone()).collect();
/// let b: Vec<_> = Generator::new(params).collect();
/// assert_eq!(a.len(), 1_000);
/// assert_eq!(a, b);
/// ```
pub struct Generator {
    params: GeneratorParams,
    rng: ChaCha8Rng,
    cards: Vec<Card>,
    boundaries: Vec<PhaseBoundary>,
    next: u64,
    now_ms: f64,
    /// The fraud run under way ([`FraudStyle::Mimicry`]), continued by the next events.
    fraud_run: Option<FraudRun>,
    /// For each boundary, its phase's position in `params.phases` (the first of that name).
    boundary_phases: Vec<usize>,
}

/// A multi-transaction fraud in progress on one card.
#[derive(Clone, Copy, Debug)]
struct FraudRun {
    card: usize,
    pattern: Pattern,
    remaining: u32,
    place: (f64, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    CardTesting,
    AccountTakeover,
    HabitMimicry,
}

impl Generator {
    /// A generator for `params` (phases with no positive share are skipped).
    pub fn new(params: GeneratorParams) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let cards = (0..params.cards.max(1))
            .map(|i| {
                let city = CITIES[rng.random_range(0..CITIES.len())];
                Card {
                    id: format!("card-{i:06}"),
                    home: (
                        city.0 + rng.random_range(-0.2..0.2),
                        city.1 + rng.random_range(-0.2..0.2),
                    ),
                    // Log-uniform between 10 and 150.
                    typical_amount: (rng.random_range(10f64.ln()..150f64.ln())).exp(),
                    habits: [
                        rng.random_range(0..8),
                        rng.random_range(0..8),
                        rng.random_range(0..8),
                    ],
                }
            })
            .collect();
        let boundaries = phase_boundaries(&params);
        let boundary_phases = boundaries
            .iter()
            .map(|b| {
                params
                    .phases
                    .iter()
                    .position(|p| p.name == b.name)
                    .unwrap_or(0)
            })
            .collect();
        let now_ms = params.start_ms as f64;
        Self {
            params,
            rng,
            cards,
            boundaries,
            next: 0,
            now_ms,
            fraud_run: None,
            boundary_phases,
        }
    }

    /// Where each phase starts.
    pub fn boundaries(&self) -> &[PhaseBoundary] {
        &self.boundaries
    }

    /// Where in `params.phases` the phase of event `index` is.
    fn phase_position(&self, index: u64) -> usize {
        let boundary = self
            .boundaries
            .iter()
            .rposition(|b| b.index <= index)
            .unwrap_or(0);
        self.boundary_phases.get(boundary).copied().unwrap_or(0)
    }
}

fn phase_boundaries(params: &GeneratorParams) -> Vec<PhaseBoundary> {
    let phases: Vec<&Phase> = params.phases.iter().filter(|p| p.share > 0.0).collect();
    let total: f64 = phases.iter().map(|p| p.share).sum();
    let mut start = 0.0;
    let mut out = Vec::new();
    for phase in phases {
        out.push(PhaseBoundary {
            index: (start / total * params.events as f64).round() as u64,
            name: phase.name.clone(),
        });
        start += phase.share;
    }
    if out.is_empty() {
        out.push(PhaseBoundary {
            index: 0,
            name: "normal".into(),
        });
    }
    out
}

impl Iterator for Generator {
    type Item = RawTransaction;

    fn next(&mut self) -> Option<RawTransaction> {
        if self.next >= self.params.events || self.params.phases.is_empty() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let position = self.phase_position(index);
        let phase = &self.params.phases[position];
        let rng = &mut self.rng;
        // Exponential gaps: a Poisson stream in event time.
        let gap_s = -(1.0 - rng.random::<f64>()).ln() / self.params.rate_per_second.max(1e-9);
        self.now_ms += gap_s * 1000.0;
        if self.params.fraud == FraudStyle::Mimicry {
            let (card, amount, category, place) = mimicry_draw(
                rng,
                &self.cards,
                &mut self.fraud_run,
                phase.fraud_rate,
                (phase.amount_multiplier, phase.new_category_rate),
            );
            let is_fraud = category.1;
            return Some(self.transaction(card, amount, category.0, place, is_fraud, position));
        }
        let card_index = rng.random_range(0..self.cards.len());
        let card = &self.cards[card_index];
        let is_fraud = rng.random::<f64>() < phase.fraud_rate;
        let (amount, category, place) = if is_fraud {
            // Several times the card's usual amount, resaleable goods, far from home.
            let amount = card.typical_amount * rng.random_range(4.0..25.0);
            let category = RISKY[rng.random_range(0..RISKY.len())];
            let city = CITIES[rng.random_range(0..CITIES.len())];
            (amount, category, city)
        } else {
            let spread = (rng.random_range(-0.6..0.6f64)).exp();
            let amount = card.typical_amount * spread * phase.amount_multiplier;
            let category = if rng.random::<f64>() < phase.new_category_rate {
                CATEGORIES[rng.random_range(0..CATEGORIES.len())]
            } else {
                CATEGORIES[card.habits[rng.random_range(0..3)]]
            };
            let place = (
                card.home.0 + rng.random_range(-0.05..0.05),
                card.home.1 + rng.random_range(-0.05..0.05),
            );
            (amount, category, place)
        };
        Some(self.transaction(card_index, amount, category, place, is_fraud, position))
    }
}

impl Generator {
    /// The transaction of `card` at the current time, with its merchant and id drawn.
    fn transaction(
        &mut self,
        card: usize,
        amount: f64,
        category: &str,
        (latitude, longitude): (f64, f64),
        is_fraud: bool,
        phase: usize,
    ) -> RawTransaction {
        let rng = &mut self.rng;
        let merchant = merchant_id(rng.random_range(0..5_000));
        let event_id = uuid_from(rng.random::<u128>());
        RawTransaction {
            schema_version: crate::messages::SCHEMA_VERSION,
            event_id,
            card_id: self.cards[card].id.clone(),
            timestamp_ms: self.now_ms as i64,
            amount: (amount * 100.0).round() / 100.0,
            merchant,
            category: category.into(),
            latitude,
            longitude,
            is_fraud,
            phase: self.params.phases[phase].name.clone(),
        }
    }
}

/// One event of the mimicry stream: `(card, amount, (category, is_fraud), place)`. A fraud
/// run under way continues on its card; otherwise a fraud starts with probability
/// `fraud_rate`, or the card makes an ordinary purchase.
fn mimicry_draw(
    rng: &mut ChaCha8Rng,
    cards: &[Card],
    fraud_run: &mut Option<FraudRun>,
    fraud_rate: f64,
    (amount_multiplier, new_category_rate): (f64, f64),
) -> (usize, f64, (&'static str, bool), (f64, f64)) {
    let near = |rng: &mut ChaCha8Rng, (lat, lon): (f64, f64)| {
        (
            lat + rng.random_range(-0.05..0.05),
            lon + rng.random_range(-0.05..0.05),
        )
    };
    let run = match fraud_run.take() {
        Some(run) => Some(run),
        None if rng.random::<f64>() < fraud_rate => {
            let card = rng.random_range(0..cards.len());
            let draw = rng.random::<f64>();
            let (pattern, length) = if draw < 0.3 {
                (Pattern::CardTesting, rng.random_range(3..=6))
            } else if draw < 0.65 {
                (Pattern::AccountTakeover, rng.random_range(2..=4))
            } else {
                (Pattern::HabitMimicry, 1)
            };
            // A takeover happens from a city other than the card's home.
            let home = cards[card].home;
            let place = loop {
                let city = CITIES[rng.random_range(0..CITIES.len())];
                if pattern != Pattern::AccountTakeover
                    || (city.0 - home.0).abs() + (city.1 - home.1).abs() > 1.0
                {
                    break city;
                }
            };
            Some(FraudRun {
                card,
                pattern,
                remaining: length,
                place,
            })
        }
        None => None,
    };
    let Some(mut run) = run else {
        let index = rng.random_range(0..cards.len());
        let card = &cards[index];
        let spread = (rng.random_range(-0.6..0.6f64)).exp();
        let amount = card.typical_amount * spread * amount_multiplier;
        let category = if rng.random::<f64>() < new_category_rate {
            CATEGORIES[rng.random_range(0..CATEGORIES.len())]
        } else {
            CATEGORIES[card.habits[rng.random_range(0..3)]]
        };
        return (index, amount, (category, false), near(rng, card.home));
    };
    let card = &cards[run.card];
    let habitual = CATEGORIES[card.habits[rng.random_range(0..3)]];
    let (amount, category, place) = match run.pattern {
        Pattern::CardTesting => (rng.random_range(0.5..5.0), habitual, near(rng, card.home)),
        Pattern::AccountTakeover => {
            let category = if rng.random::<bool>() {
                habitual
            } else {
                RISKY[rng.random_range(0..RISKY.len())]
            };
            let amount = card.typical_amount * rng.random_range(1.0..2.5);
            (amount, category, near(rng, run.place))
        }
        Pattern::HabitMimicry => (
            card.typical_amount * rng.random_range(1.5..3.0),
            habitual,
            near(rng, card.home),
        ),
    };
    run.remaining -= 1;
    let index = run.card;
    if run.remaining > 0 {
        *fraud_run = Some(run);
    }
    (index, amount, (category, true), place)
}

/// `merchant-NNNN` without the formatting machinery (one id per event).
fn merchant_id(number: u16) -> String {
    let mut id = String::with_capacity(13);
    id.push_str("merchant-");
    for divisor in [1000, 100, 10, 1] {
        id.push(char::from(b'0' + (number / divisor % 10) as u8));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_their_shares_and_labels_follow_the_fraud_rates() {
        let params = GeneratorParams {
            events: 20_000,
            ..GeneratorParams::default()
        };
        let generator = Generator::new(params);
        let starts: Vec<u64> = generator.boundaries().iter().map(|b| b.index).collect();
        assert_eq!(starts, [0, 7_000, 11_000, 15_000]);
        let events: Vec<RawTransaction> = generator.collect();
        let fraud_share = |phase: &str| {
            let in_phase: Vec<_> = events.iter().filter(|e| e.phase == phase).collect();
            in_phase.iter().filter(|e| e.is_fraud).count() as f64 / in_phase.len() as f64
        };
        assert!(fraud_share("fraud_wave") > 0.05 && fraud_share("normal") < 0.02);
        assert!(
            events
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        assert!(
            events
                .iter()
                .all(|e| e.amount >= 0.0 && e.amount.is_finite())
        );
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let draw = |seed| {
            Generator::new(GeneratorParams {
                seed,
                events: 50,
                ..GeneratorParams::default()
            })
            .map(|e| e.event_id)
            .collect::<Vec<_>>()
        };
        assert_ne!(draw(1), draw(2));
    }

    /// The mimicry stream's frauds stay within the cards' habits: no large amounts, runs of
    /// small charges on one card, takeovers from far away; and the fraud share follows the
    /// phases.
    #[test]
    fn mimicry_frauds_imitate_the_cards_habits() {
        let params = GeneratorParams {
            events: 40_000,
            fraud: FraudStyle::Mimicry,
            ..GeneratorParams::default()
        };
        let events: Vec<RawTransaction> = Generator::new(params).collect();
        let frauds: Vec<&RawTransaction> = events.iter().filter(|e| e.is_fraud).collect();
        assert!(frauds.len() > 500, "{} frauds", frauds.len());
        // Typical amounts are at most 150: no fraud is above three times that.
        assert!(frauds.iter().all(|e| (0.5..=450.0).contains(&e.amount)));
        // Card testing: at least one run of three small charges in a row on one card.
        let bursts = events
            .windows(3)
            .filter(|w| {
                w.iter()
                    .all(|e| e.is_fraud && e.amount < 5.0 && e.card_id == w[0].card_id)
            })
            .count();
        assert!(bursts > 10, "{bursts} card-testing bursts");
        // Account takeover: frauds far (> 1 degree) from where the card usually buys.
        let mut homes = std::collections::HashMap::new();
        for e in events.iter().filter(|e| !e.is_fraud) {
            homes
                .entry(e.card_id.as_str())
                .or_insert((e.latitude, e.longitude));
        }
        let far = frauds
            .iter()
            .filter(|e| {
                homes
                    .get(e.card_id.as_str())
                    .is_some_and(|h| (h.0 - e.latitude).abs() + (h.1 - e.longitude).abs() > 1.0)
            })
            .count();
        assert!(
            far * 5 > frauds.len(),
            "{far} of {} frauds far from home",
            frauds.len()
        );
        let share = |phase: &str| {
            let in_phase: Vec<_> = events.iter().filter(|e| e.phase == phase).collect();
            in_phase.iter().filter(|e| e.is_fraud).count() as f64 / in_phase.len() as f64
        };
        assert!(share("fraud_wave") > 3.0 * share("normal"));
    }
}
