//! The transaction feature set: per-card state turning a stream of card transactions into a
//! fixed-order vector of features in `[0, 1]`.
//!
//! It lives in the core because it is pure and deterministic (event time only, no I/O), and
//! both the embedded pipeline and the services must compute exactly the same features.
//! Formulas and scalings are documented feature by feature in `docs/FEATURES.md` and on
//! [`TransactionFeatures::NAMES`].
//!
//! ```
//! use anomaly_core::features::{CardState, Transaction, TransactionFeatures};
//!
//! let tx = |id: &str, t: i64, amount: f64, category: &str, lat: f64, lon: f64| Transaction {
//!     event_id: id.into(),
//!     card_id: "card-42".into(),
//!     timestamp_ms: t,
//!     amount,
//!     merchant: "m".into(),
//!     category: category.into(),
//!     latitude: lat,
//!     longitude: lon,
//! };
//! let mut card = CardState::default();
//! // 2024-03-01 09:00 UTC in Paris, then 30 minutes later in New York.
//! let t0 = 1_709_283_600_000;
//! card.update(&tx("e1", t0, 25.0, "grocery", 48.8566, 2.3522))?;
//! let f = card.update(&tx("e2", t0 + 1_800_000, 900.0, "jewelry", 40.7128, -74.0060))?;
//!
//! assert_eq!(f.get("category_novelty"), Some(1.0));
//! assert_eq!(f.get("speed_kmh"), Some(1.0)); // ~11,700 km/h: impossible travel
//! assert_eq!(f.get("hour_of_day"), Some(0.3913)); // 09:30 UTC -> hour 9 / 23
//! assert!(f.values().iter().all(|v| (0.0..=1.0).contains(v)));
//! assert_eq!(f.values().len(), TransactionFeatures::NAMES.len());
//! # Ok::<(), anomaly_core::features::TransactionError>(())
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::{self, Compact, DecodeError, KIND_CARD, Reader};
use super::log_scale::{Ln1p, round4, scaled};
use super::window::{InvalidState, SlidingWindow, WindowParams, WindowSpan};
use crate::MAX_INPUT_MAGNITUDE;
use crate::cache_hint::prefetch;
use crate::error::{ParameterError, check};

/// One card transaction, as it arrives from the payment stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// Unique id of the event (only used in error messages).
    pub event_id: String,
    /// The card; features are computed per card. Must not be empty.
    pub card_id: String,
    /// Event time, Unix milliseconds (UTC).
    pub timestamp_ms: i64,
    /// Amount in the card's currency: finite, `>= 0` and at most 1e100.
    pub amount: f64,
    /// Merchant id (carried along; no feature uses it yet).
    pub merchant: String,
    /// Merchant category (e.g. an MCC code).
    pub category: String,
    /// Latitude in degrees, in `[-90, 90]`.
    pub latitude: f64,
    /// Longitude in degrees, in `[-180, 180]`.
    pub longitude: f64,
}

/// A transaction was rejected. Apart from [`TooLate`](TransactionError::TooLate), which
/// increments [`CardState::late_dropped`], the card state is exactly as it was.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TransactionError {
    /// The amount is NaN, infinite, negative or above 1e100.
    #[error(
        "transaction {event_id}: amount must be a finite number in [0, 1e100], got {amount}; refunds and reversals are not scored"
    )]
    InvalidAmount {
        /// The transaction's `event_id`.
        event_id: String,
        /// The rejected amount.
        amount: f64,
    },
    /// The latitude is not a number in `[-90, 90]`.
    #[error("transaction {event_id}: latitude must be in [-90, 90] degrees, got {latitude}")]
    InvalidLatitude {
        /// The transaction's `event_id`.
        event_id: String,
        /// The rejected latitude.
        latitude: f64,
    },
    /// The longitude is not a number in `[-180, 180]`.
    #[error("transaction {event_id}: longitude must be in [-180, 180] degrees, got {longitude}")]
    InvalidLongitude {
        /// The transaction's `event_id`.
        event_id: String,
        /// The rejected longitude.
        longitude: f64,
    },
    /// `card_id` is empty, which would merge unrelated transactions into one card.
    #[error("transaction {event_id}: card_id must not be empty")]
    EmptyCardId {
        /// The transaction's `event_id`.
        event_id: String,
    },
    /// The transaction is older than the card's newest transaction minus the allowed
    /// lateness. It was counted in [`CardState::late_dropped`] and not applied.
    #[error(
        "transaction {event_id}: timestamp {timestamp_ms} is more than {allowed_lateness_ms} ms before the card's newest transaction ({newest_ms}); it was dropped (raise allowed_lateness_ms if such delays are expected)"
    )]
    TooLate {
        /// The transaction's `event_id`.
        event_id: String,
        /// Its timestamp.
        timestamp_ms: i64,
        /// The card's newest accepted timestamp.
        newest_ms: i64,
        /// The lateness allowed by [`TransactionParams`].
        allowed_lateness_ms: u64,
    },
}

/// [`CardState`]'s parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionParams {
    /// How far behind the card's newest transaction a transaction may arrive and still be
    /// applied, in ms. Default 300_000 (5 minutes).
    pub allowed_lateness_ms: u64,
    /// Previous transactions the amount z-score compares against, in `2..=1000`. Default 20.
    pub recent_transactions: u32,
    /// Categories remembered per card for the novelty feature (least recently used are
    /// forgotten first), in `1..=1024`. Default 32.
    pub max_categories: u32,
}

impl Default for TransactionParams {
    fn default() -> Self {
        Self {
            allowed_lateness_ms: 300_000,
            recent_transactions: 20,
            max_categories: 32,
        }
    }
}

impl TransactionParams {
    fn validate(&self) -> Result<(), ParameterError> {
        check(
            (2..=1000).contains(&self.recent_transactions),
            "CardState",
            "recent_transactions",
            "in 2..=1000",
            self.recent_transactions,
        )?;
        check(
            (1..=1024).contains(&self.max_categories),
            "CardState",
            "max_categories",
            "in 1..=1024",
            self.max_categories,
        )
    }

    fn window(&self, span: WindowSpan) -> WindowParams {
        WindowParams {
            span,
            allowed_lateness_ms: self.allowed_lateness_ms,
        }
    }

    fn hour(&self) -> WindowParams {
        self.window(WindowSpan::Time { millis: HOUR_MS })
    }

    fn day(&self) -> WindowParams {
        self.window(WindowSpan::Time { millis: DAY_MS })
    }

    fn recent(&self) -> WindowParams {
        self.window(WindowSpan::Events {
            count: self.recent_transactions,
        })
    }
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6_371.008_8;
/// Amounts and amount sums reach 1.0 at this value (log scale).
pub(super) const AMOUNT_CAP: f64 = 1e6;
const COUNT_1H_CAP: f64 = 100.0;
const COUNT_1D_CAP: f64 = 1_000.0;
/// 30 days, in seconds.
pub(super) const GAP_CAP_S: f64 = 2_592_000.0;
/// Half the Earth's circumference: the largest possible distance.
pub(super) const DISTANCE_CAP_KM: f64 = std::f64::consts::PI * EARTH_RADIUS_KM;
pub(super) const SPEED_CAP_KMH: f64 = 1_000.0;

/// `ln(1 + cap)` of every cap, and `ln(1 + n)` of small counts, each computed once: they were
/// more than half of the logarithms taken per transaction. Same function, same values.
struct Logs {
    amount_cap: f64,
    count_1h_cap: f64,
    count_1d_cap: f64,
    gap_cap: f64,
    distance_cap: f64,
    speed_cap: f64,
    small_counts: [f64; SMALL_COUNTS],
    /// `ln(1 + v)` of the features' other values, inline.
    ln1p: Ln1p,
}

/// Counts below this take their logarithm from [`Logs::small_counts`].
const SMALL_COUNTS: usize = 256;

static LOGS: std::sync::LazyLock<Logs> = std::sync::LazyLock::new(|| Logs {
    amount_cap: AMOUNT_CAP.ln_1p(),
    count_1h_cap: COUNT_1H_CAP.ln_1p(),
    count_1d_cap: COUNT_1D_CAP.ln_1p(),
    gap_cap: GAP_CAP_S.ln_1p(),
    distance_cap: DISTANCE_CAP_KM.ln_1p(),
    speed_cap: SPEED_CAP_KMH.ln_1p(),
    small_counts: std::array::from_fn(|n| (n as f64).ln_1p()),
    ln1p: Ln1p::new(),
});
/// Speeds are computed over at least one minute, so simultaneous transactions a few metres
/// apart do not look supersonic.
const SPEED_MIN_HOURS: f64 = 1.0 / 60.0;

/// The feature vector of one transaction: [`NAMES`](Self::NAMES)`.len()` values, each in
/// `[0, 1]` and rounded to 4 decimals, in the fixed order of [`NAMES`](Self::NAMES).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionFeatures {
    values: [f64; 11],
}

impl TransactionFeatures {
    /// The features' names, in vector order. `ln1p_scaled(v, cap)` is
    /// `min(ln(1 + v) / ln(1 + cap), 1)`.
    ///
    /// | # | name | value |
    /// | --- | --- | --- |
    /// | 0 | `amount_log` | `ln1p_scaled(amount, 1e6)` |
    /// | 1 | `amount_zscore` | `1 / (1 + e^-z)`, `z` = amount vs the card's previous `recent_transactions` amounts; 0.5 with fewer than 2 |
    /// | 2 | `count_1h` | `ln1p_scaled(transactions in the last hour, 100)` |
    /// | 3 | `amount_sum_1h` | `ln1p_scaled(amount sum in the last hour, 1e6)` |
    /// | 4 | `count_1d` | `ln1p_scaled(transactions in the last 24 h, 1000)` |
    /// | 5 | `amount_sum_1d` | `ln1p_scaled(amount sum in the last 24 h, 1e6)` |
    /// | 6 | `seconds_since_previous` | `ln1p_scaled(seconds, 30 days)`; 1 for a card's first transaction |
    /// | 7 | `category_novelty` | 1 if the card has not used this category recently, else 0 |
    /// | 8 | `distance_km` | `ln1p_scaled(haversine km from the previous location, 20015)`; 0 first |
    /// | 9 | `speed_kmh` | `ln1p_scaled(km / max(hours since previous, 1/60), 1000)`; 0 first |
    /// | 10 | `hour_of_day` | UTC hour `/ 23` |
    ///
    /// Windows include the transaction itself; `z`, the category test and the previous
    /// transaction describe the history before it.
    pub const NAMES: [&'static str; 11] = [
        "amount_log",
        "amount_zscore",
        "count_1h",
        "amount_sum_1h",
        "count_1d",
        "amount_sum_1d",
        "seconds_since_previous",
        "category_novelty",
        "distance_km",
        "speed_kmh",
        "hour_of_day",
    ];

    /// The values, in [`NAMES`](Self::NAMES) order.
    pub fn values(&self) -> &[f64; 11] {
        &self.values
    }

    /// The value of the feature called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        self.values.get(i).copied()
    }

    /// `(name, value)` pairs in vector order.
    ///
    /// ```
    /// use anomaly_core::features::{CardState, Transaction, TransactionFeatures};
    ///
    /// let tx = Transaction {
    ///     event_id: "e1".into(),
    ///     card_id: "c1".into(),
    ///     timestamp_ms: 0,
    ///     amount: 10.0,
    ///     merchant: "m".into(),
    ///     category: "books".into(),
    ///     latitude: 0.0,
    ///     longitude: 0.0,
    /// };
    /// let features = CardState::default().update(&tx)?;
    /// let names: Vec<&str> = features.iter().map(|(name, _)| name).collect();
    /// assert_eq!(names, TransactionFeatures::NAMES);
    /// # Ok::<(), anomaly_core::features::TransactionError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        Self::NAMES.iter().copied().zip(self.values.iter().copied())
    }
}

/// Location of the card's newest transaction (its time is the windows' newest timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Location {
    latitude: f64,
    longitude: f64,
}

/// Everything the transaction features need to remember about one card, and the function
/// that turns its next transaction into features: [`update`](Self::update).
///
/// Out-of-order transactions follow the windows' policy (see
/// [`SlidingWindow`]): up to `allowed_lateness_ms` late they are folded
/// into the windows at their time position, but the "previous transaction" (gap, distance,
/// speed) stays the newest by event time and the gap of a late transaction is 0; later than
/// that they are rejected with [`TransactionError::TooLate`] and counted.
///
/// State is compact ([`Compact`]: about 20 bytes, plus 3 to 12 per retained transaction
/// (amounts with up to 4 decimals take 2 to 4 bytes), plus 8 per remembered category) and
/// serde-serializable; a restored state continues bit-identically.
///
/// The three windows (last hour, last day, last `recent_transactions`) receive the same
/// accepted transactions and each retains a suffix of them in time order, so the encoding
/// stores the longest window's events once and each window as a suffix length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CardStateRepr")]
pub struct CardState {
    params: TransactionParams,
    last_hour: SlidingWindow,
    last_day: SlidingWindow,
    recent: SlidingWindow,
    previous: Option<Location>,
    /// FNV-1a hashes of the categories used, least recently used first.
    categories: VecDeque<u64>,
    late_dropped: u64,
}

impl Default for CardState {
    fn default() -> Self {
        Self::fresh(TransactionParams::default())
    }
}

impl CardState {
    /// The state of a card with no transaction yet.
    pub fn new(params: TransactionParams) -> Result<Self, ParameterError> {
        params.validate()?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: TransactionParams) -> Self {
        // Spans come from validated constants and params, so these cannot fail; the
        // defaults are only a type-level fallback.
        let window = |p| SlidingWindow::new(p).unwrap_or_default();
        Self {
            params,
            last_hour: window(params.hour()),
            last_day: window(params.day()),
            recent: window(params.recent()),
            previous: None,
            categories: VecDeque::new(),
            late_dropped: 0,
        }
    }

    /// The parameters this state was built with.
    pub fn params(&self) -> &TransactionParams {
        &self.params
    }

    /// Transactions rejected as [`TransactionError::TooLate`].
    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// The card's amounts over the last hour of event time.
    pub fn last_hour(&self) -> &SlidingWindow {
        &self.last_hour
    }

    /// The card's amounts over the last 24 hours of event time.
    pub fn last_day(&self) -> &SlidingWindow {
        &self.last_day
    }

    /// The card's last `recent_transactions` amounts.
    pub fn recent(&self) -> &SlidingWindow {
        &self.recent
    }

    /// Applies `tx` to the card and returns its features. A rejected transaction leaves the
    /// state untouched (a too-late one only increments [`late_dropped`](Self::late_dropped)).
    ///
    /// ```
    /// use anomaly_core::features::{CardState, Transaction, TransactionError, TransactionParams};
    ///
    /// let mut card = CardState::new(TransactionParams {
    ///     allowed_lateness_ms: 60_000,
    ///     ..TransactionParams::default()
    /// })?;
    /// let tx = |id: &str, t: i64, amount: f64| Transaction {
    ///     event_id: id.into(),
    ///     card_id: "card-1".into(),
    ///     timestamp_ms: t,
    ///     amount,
    ///     merchant: "shop".into(),
    ///     category: "5411".into(),
    ///     latitude: 52.52,
    ///     longitude: 13.40,
    /// };
    /// card.update(&tx("a", 600_000, 12.0))?;
    /// card.update(&tx("b", 570_000, 8.0))?; // 30 s late: applied
    /// assert_eq!(card.last_hour().summary().sum(), 20.0);
    ///
    /// let err = card.update(&tx("c", 500_000, 5.0)).unwrap_err(); // 100 s late
    /// assert!(matches!(err, TransactionError::TooLate { .. }));
    /// assert_eq!(card.late_dropped(), 1);
    ///
    /// let err = card.update(&tx("d", 600_001, -3.0)).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "transaction d: amount must be a finite number in [0, 1e100], got -3; refunds and reversals are not scored"
    /// );
    /// assert_eq!(card.last_hour().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update(&mut self, tx: &Transaction) -> Result<TransactionFeatures, TransactionError> {
        // A card's state is spread over several allocations, cold when cards are many:
        // requesting now the lines this update reads first (each window's ends and summaries,
        // the start of the category list) makes their loads overlap.
        for window in [&self.last_hour, &self.last_day, &self.recent] {
            window.prefetch();
        }
        if let Some(oldest) = self.categories.front() {
            prefetch(oldest);
        }
        validate(tx)?;
        // What needs only the transaction and the struct comes first, so that those loads
        // have arrived when the windows are first read below.
        let category = fnv1a(tx.category.as_bytes());
        let km_from_previous = self
            .previous
            .map(|prev| haversine_km(prev.latitude, prev.longitude, tx.latitude, tx.longitude));
        let t = tx.timestamp_ms;
        let newest = self.last_day.newest_timestamp();
        if let Some(newest_ms) = newest {
            if i128::from(t) < i128::from(newest_ms) - i128::from(self.params.allowed_lateness_ms) {
                self.late_dropped = self.late_dropped.saturating_add(1);
                return Err(TransactionError::TooLate {
                    event_id: tx.event_id.clone(),
                    timestamp_ms: t,
                    newest_ms,
                    allowed_lateness_ms: self.params.allowed_lateness_ms,
                });
            }
        }

        // History features, before the transaction joins the history.
        let z = amount_zscore(tx.amount, &self.recent);
        let (gap_s, distance_km, speed_kmh) = match (km_from_previous, newest) {
            (Some(km), Some(prev_t)) => {
                // In i64 when it fits (always, for timestamps of this era): converting an
                // i128 is a call to `__floattidf`, 2% of the features' instructions. Both
                // conversions round to the nearest f64 alike.
                let gap_ms = match t.checked_sub(prev_t) {
                    Some(gap) => gap.max(0) as f64,
                    None => (i128::from(t) - i128::from(prev_t)).max(0) as f64,
                };
                let hours = (gap_ms / 3_600_000.0).max(SPEED_MIN_HOURS);
                (Some(gap_ms / 1000.0), km, km / hours)
            }
            _ => (None, 0.0, 0.0),
        };
        let seen_at = self.categories.iter().position(|&c| c == category);

        // Cannot fail: the amount passed the same check the windows make, and the windows
        // share the card's newest timestamp and lateness, so none drops the event.
        for window in [&mut self.last_hour, &mut self.last_day, &mut self.recent] {
            window
                .push(t, tx.amount)
                .map_err(|_| TransactionError::InvalidAmount {
                    event_id: tx.event_id.clone(),
                    amount: tx.amount,
                })?;
        }
        if newest.is_none_or(|n| t >= n) {
            self.previous = Some(Location {
                latitude: tx.latitude,
                longitude: tx.longitude,
            });
        }
        if let Some(pos) = seen_at {
            self.categories.remove(pos);
        }
        self.categories.push_back(category);
        if self.categories.len() > self.params.max_categories as usize {
            self.categories.pop_front();
        }

        let hour = self.last_hour.summary();
        let day = self.last_day.summary();
        let hour_of_day = t.rem_euclid(DAY_MS as i64) / HOUR_MS as i64;
        let logs = &*LOGS;
        // Every value rounded to 4 decimals; `ln_scaled` does so itself.
        let ln_scaled = |v: f64, ln1p_cap: f64| logs.ln1p.scaled_rounded(v, ln1p_cap);
        let values = [
            ln_scaled(tx.amount, logs.amount_cap),
            round4(1.0 / (1.0 + (-z).exp())),
            round4(scaled(count_ln1p(hour.count(), logs), logs.count_1h_cap)),
            ln_scaled(hour.sum(), logs.amount_cap),
            round4(scaled(count_ln1p(day.count(), logs), logs.count_1d_cap)),
            ln_scaled(day.sum(), logs.amount_cap),
            gap_s.map_or(1.0, |s| ln_scaled(s, logs.gap_cap)),
            if seen_at.is_none() { 1.0 } else { 0.0 },
            ln_scaled(distance_km, logs.distance_cap),
            ln_scaled(speed_kmh, logs.speed_cap),
            round4(hour_of_day as f64 / 23.0),
        ];
        Ok(TransactionFeatures { values })
    }

    fn check_invariants(&self) -> Result<(), InvalidState> {
        let invalid = |reason| InvalidState {
            what: "card state",
            reason,
        };
        self.params
            .validate()
            .map_err(|_| invalid("parameters out of range"))?;
        if *self.last_hour.params() != self.params.hour()
            || *self.last_day.params() != self.params.day()
            || *self.recent.params() != self.params.recent()
        {
            return Err(invalid(
                "window parameters do not match the card parameters",
            ));
        }
        let newest = self.last_day.newest_timestamp();
        if self.last_hour.newest_timestamp() != newest
            || self.recent.newest_timestamp() != newest
            || self.previous.is_some() != newest.is_some()
        {
            return Err(invalid("windows and previous transaction disagree"));
        }
        let windows = [&self.last_hour, &self.last_day, &self.recent];
        if let Some(longest) = windows.iter().max_by_key(|w| w.len()) {
            let bits = |(t, x): (i64, f64)| (t, x.to_bits());
            let is_suffix = |w: &&SlidingWindow| {
                w.events()
                    .map(bits)
                    .eq(longest.events().skip(longest.len() - w.len()).map(bits))
            };
            if !windows.iter().all(is_suffix) {
                return Err(invalid("windows must hold the same latest transactions"));
            }
        }
        if let Some(p) = self.previous {
            if !valid_latitude(p.latitude) || !valid_longitude(p.longitude) {
                return Err(invalid("previous location out of range"));
            }
        }
        if self.categories.len() > self.params.max_categories as usize {
            return Err(invalid("more categories than max_categories"));
        }
        let mut sorted: Vec<u64> = self.categories.iter().copied().collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("duplicate categories"));
        }
        Ok(())
    }
}

fn validate(tx: &Transaction) -> Result<(), TransactionError> {
    let event_id = || tx.event_id.clone();
    if tx.card_id.is_empty() {
        return Err(TransactionError::EmptyCardId {
            event_id: event_id(),
        });
    }
    if !(tx.amount >= 0.0 && tx.amount <= MAX_INPUT_MAGNITUDE) {
        return Err(TransactionError::InvalidAmount {
            event_id: event_id(),
            amount: tx.amount,
        });
    }
    if !valid_latitude(tx.latitude) {
        return Err(TransactionError::InvalidLatitude {
            event_id: event_id(),
            latitude: tx.latitude,
        });
    }
    if !valid_longitude(tx.longitude) {
        return Err(TransactionError::InvalidLongitude {
            event_id: event_id(),
            longitude: tx.longitude,
        });
    }
    Ok(())
}

fn valid_latitude(x: f64) -> bool {
    (-90.0..=90.0).contains(&x)
}

fn valid_longitude(x: f64) -> bool {
    (-180.0..=180.0).contains(&x)
}

/// `z` of `amount` against the window's sample, with the standard deviation floored at 5% of
/// the mean and at 0.01 so a card with identical amounts does not turn one cent into an
/// infinite z; 0 (neutral) with fewer than two previous amounts.
fn amount_zscore(amount: f64, recent: &SlidingWindow) -> f64 {
    let s = recent.summary();
    if s.count() < 2 {
        return 0.0;
    }
    let mean = s.mean();
    let scale = s.sample_std().max(0.05 * mean.abs()).max(0.01);
    (amount - mean) / scale
}

/// `min(ln(1 + v) / ln(1 + cap), 1)`, with negative `v` (rounding noise) treated as 0.
#[cfg(test)]
fn ln1p_scaled(v: f64, cap: f64) -> f64 {
    (v.max(0.0).ln_1p() / cap.ln_1p()).min(1.0)
}

/// `ln(1 + n)`, from the table for small counts.
#[inline]
fn count_ln1p(n: u64, logs: &Logs) -> f64 {
    match usize::try_from(n)
        .ok()
        .and_then(|i| logs.small_counts.get(i))
    {
        Some(&ln1p) => ln1p,
        None => (n as f64).ln_1p(),
    }
}

/// Great-circle distance on a sphere of the Earth's mean radius.
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

/// 64-bit FNV-1a: a fixed, platform-independent hash, so stored category sets stay valid
/// across builds (std's hasher is randomly seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardStateRepr {
    params: TransactionParams,
    last_hour: SlidingWindow,
    last_day: SlidingWindow,
    recent: SlidingWindow,
    previous: Option<Location>,
    categories: VecDeque<u64>,
    late_dropped: u64,
}

impl TryFrom<CardStateRepr> for CardState {
    type Error = InvalidState;

    fn try_from(r: CardStateRepr) -> Result<Self, InvalidState> {
        let state = Self {
            params: r.params,
            last_hour: r.last_hour,
            last_day: r.last_day,
            recent: r.recent,
            previous: r.previous,
            categories: r.categories,
            late_dropped: r.late_dropped,
        };
        state.check_invariants()?;
        Ok(state)
    }
}

impl Compact for CardState {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, KIND_CARD);
        codec::put_varint(out, self.params.allowed_lateness_ms);
        codec::put_varint(out, u64::from(self.params.recent_transactions));
        codec::put_varint(out, u64::from(self.params.max_categories));
        codec::put_varint(out, self.late_dropped);
        // The three windows receive the same events, so each holds a suffix of the longest
        // one's events (see `CardState`): those are stored once.
        let longest = [&self.last_hour, &self.last_day, &self.recent]
            .into_iter()
            .max_by_key(|w| w.len())
            .unwrap_or(&self.last_day);
        codec::put_events(out, longest.events());
        self.last_hour.encode_layout(out);
        self.last_day.encode_layout(out);
        self.recent.encode_layout(out);
        // Present exactly when the windows are non-empty, so no flag is needed.
        if let Some(p) = self.previous {
            codec::put_f64(out, p.latitude);
            codec::put_f64(out, p.longitude);
        }
        codec::put_varint(out, self.categories.len() as u64);
        for &c in &self.categories {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_CARD, "card state")?;
        let params = TransactionParams {
            allowed_lateness_ms: r.varint("allowed lateness")?,
            recent_transactions: r.u32("recent_transactions")?,
            max_categories: r.u32("max_categories")?,
        };
        params
            .validate()
            .map_err(|_| r.invalid("card parameters", "out of range"))?;
        let late_dropped = r.varint("late-dropped count")?;
        let events = r.events()?;
        let last_hour = SlidingWindow::decode_layout(&mut r, params.hour(), &events)?;
        let last_day = SlidingWindow::decode_layout(&mut r, params.day(), &events)?;
        let recent = SlidingWindow::decode_layout(&mut r, params.recent(), &events)?;
        if [&last_hour, &last_day, &recent]
            .iter()
            .all(|w| w.len() != events.len())
        {
            return Err(r.invalid("card windows", "no window covers every stored event"));
        }
        let previous = if last_day.is_empty() {
            None
        } else {
            Some(Location {
                latitude: r.f64("previous latitude")?,
                longitude: r.f64("previous longitude")?,
            })
        };
        let n = r.len("category count", 8)?;
        let mut categories = VecDeque::with_capacity(n);
        for _ in 0..n {
            categories.push_back(r.u64_le("category")?);
        }
        let state = Self {
            params,
            last_hour,
            last_day,
            recent,
            previous,
            categories,
            late_dropped,
        };
        state.check_invariants().map_err(|e| e.at(&r))?;
        r.finish()?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The precomputed logarithms are the ones the features would take, bit for bit, on both
    /// sides of the small-count table's end.
    #[test]
    fn precomputed_logarithms_are_the_computed_ones() {
        for n in 0..3 * SMALL_COUNTS as u64 {
            assert_eq!(
                count_ln1p(n, &LOGS).to_bits(),
                (n as f64).ln_1p().to_bits(),
                "{n}"
            );
        }
        let caps = [
            (LOGS.amount_cap, AMOUNT_CAP),
            (LOGS.count_1h_cap, COUNT_1H_CAP),
            (LOGS.count_1d_cap, COUNT_1D_CAP),
            (LOGS.gap_cap, GAP_CAP_S),
            (LOGS.distance_cap, DISTANCE_CAP_KM),
            (LOGS.speed_cap, SPEED_CAP_KMH),
        ];
        for (log, cap) in caps {
            assert_eq!(log.to_bits(), cap.ln_1p().to_bits(), "{cap}");
        }
    }

    fn tx(t: i64, amount: f64) -> Transaction {
        Transaction {
            event_id: format!("e{t}"),
            card_id: "c".into(),
            timestamp_ms: t,
            amount,
            merchant: "m".into(),
            category: "food".into(),
            latitude: 0.0,
            longitude: 0.0,
        }
    }

    #[test]
    fn first_transaction_features() {
        let mut card = CardState::default();
        let f = card.update(&tx(0, 99.0)).unwrap();
        assert_eq!(
            f.get("amount_log"),
            Some(round4(100f64.ln() / 1e6f64.ln_1p()))
        );
        assert_eq!(f.get("amount_zscore"), Some(0.5));
        assert_eq!(f.get("count_1h"), Some(round4(2f64.ln() / 101f64.ln())));
        assert_eq!(f.get("seconds_since_previous"), Some(1.0));
        assert_eq!(f.get("category_novelty"), Some(1.0));
        assert_eq!(f.get("distance_km"), Some(0.0));
        assert_eq!(f.get("speed_kmh"), Some(0.0));
        assert_eq!(f.get("hour_of_day"), Some(0.0));
        assert_eq!(f.get("nope"), None);
    }

    /// A gap wider than i64 takes the i128 path (a wrapping subtraction would make it
    /// negative, feature 0) and caps at 1.
    #[test]
    fn gaps_beyond_i64_cap_at_one() {
        let mut card = CardState::default();
        card.update(&tx(i64::MIN, 10.0)).unwrap();
        let far = card.update(&tx(i64::MAX, 10.0)).unwrap();
        assert_eq!(far.get("seconds_since_previous"), Some(1.0));
        let near = card.update(&tx(i64::MAX, 10.0)).unwrap();
        assert_eq!(near.get("seconds_since_previous"), Some(0.0));
    }

    #[test]
    fn windows_count_and_sum_per_span() {
        let mut card = CardState::default();
        card.update(&tx(0, 10.0)).unwrap();
        card.update(&tx(2 * HOUR_MS as i64, 20.0)).unwrap();
        card.update(&tx(2 * HOUR_MS as i64 + 1, 30.0)).unwrap();
        assert_eq!(card.last_hour().summary().count(), 2);
        assert_eq!(card.last_hour().summary().sum(), 50.0);
        assert_eq!(card.last_day().summary().sum(), 60.0);
        let f = card.update(&tx(DAY_MS as i64 + 10, 5.0)).unwrap();
        // Day window (t - 24h, t]: the first transactions at 0 and 2h are... only 0 leaves.
        assert_eq!(card.last_day().summary().count(), 3);
        assert_eq!(f.get("count_1h"), Some(round4(2f64.ln() / 101f64.ln())));
    }

    #[test]
    fn zscore_uses_previous_amounts_only() {
        let mut card = CardState::default();
        for (i, a) in [10.0, 12.0, 8.0, 10.0].into_iter().enumerate() {
            card.update(&tx(i as i64 * 1000, a)).unwrap();
        }
        let typical = card.clone().update(&tx(10_000, 10.0)).unwrap();
        assert_eq!(typical.get("amount_zscore"), Some(0.5));
        let big = card.update(&tx(10_000, 1000.0)).unwrap();
        assert_eq!(big.get("amount_zscore"), Some(1.0));
    }

    #[test]
    fn identical_amounts_do_not_explode() {
        let mut card = CardState::default();
        for i in 0..5 {
            card.update(&tx(i, 100.0)).unwrap();
        }
        let f = card.update(&tx(6, 100.01)).unwrap();
        let z = f.get("amount_zscore").unwrap();
        assert!(z > 0.5 && z < 0.51, "{z}");
    }

    #[test]
    fn category_set_is_bounded_lru() {
        let mut card = CardState::new(TransactionParams {
            max_categories: 2,
            ..Default::default()
        })
        .unwrap();
        let with = |t: i64, c: &str| Transaction {
            category: c.into(),
            ..tx(t, 1.0)
        };
        let novelty = |card: &mut CardState, t, c| {
            card.update(&with(t, c))
                .unwrap()
                .get("category_novelty")
                .unwrap()
        };
        assert_eq!(novelty(&mut card, 1, "a"), 1.0);
        assert_eq!(novelty(&mut card, 2, "b"), 1.0);
        assert_eq!(novelty(&mut card, 3, "a"), 0.0); // "a" becomes most recent
        assert_eq!(novelty(&mut card, 4, "c"), 1.0); // forgets "b"
        assert_eq!(novelty(&mut card, 5, "a"), 0.0);
        assert_eq!(novelty(&mut card, 6, "b"), 1.0);
    }

    #[test]
    fn distance_and_speed() {
        let mut card = CardState::default();
        let at = |t: i64, lat: f64, lon: f64| Transaction {
            latitude: lat,
            longitude: lon,
            ..tx(t, 5.0)
        };
        card.update(&at(0, 0.0, 0.0)).unwrap();
        // One degree of longitude at the equator, one hour later: ~111.2 km/h.
        let f = card.update(&at(HOUR_MS as i64, 0.0, 1.0)).unwrap();
        let km = haversine_km(0.0, 0.0, 0.0, 1.0);
        assert!((km - 111.195).abs() < 0.01, "{km}");
        assert_eq!(
            f.get("distance_km"),
            Some(round4(ln1p_scaled(km, DISTANCE_CAP_KM)))
        );
        assert_eq!(
            f.get("speed_kmh"),
            Some(round4(ln1p_scaled(km, SPEED_CAP_KMH)))
        );
        assert_eq!(
            f.get("seconds_since_previous"),
            Some(round4(ln1p_scaled(3600.0, GAP_CAP_S)))
        );
        let antipode = haversine_km(0.0, 0.0, 0.0, 180.0);
        assert!((antipode - DISTANCE_CAP_KM).abs() < 1e-6);
    }

    #[test]
    fn invalid_transactions_leave_state_untouched() {
        let mut card = CardState::default();
        card.update(&tx(1_000_000, 5.0)).unwrap();
        let before = card.clone();
        let bad = [
            Transaction {
                amount: -1.0,
                ..tx(1_000_001, 0.0)
            },
            Transaction {
                amount: f64::NAN,
                ..tx(1_000_001, 0.0)
            },
            Transaction {
                amount: f64::INFINITY,
                ..tx(1_000_001, 0.0)
            },
            Transaction {
                latitude: 91.0,
                ..tx(1_000_001, 1.0)
            },
            Transaction {
                latitude: f64::NAN,
                ..tx(1_000_001, 1.0)
            },
            Transaction {
                longitude: -180.5,
                ..tx(1_000_001, 1.0)
            },
            Transaction {
                card_id: String::new(),
                ..tx(1_000_001, 1.0)
            },
        ];
        for b in &bad {
            let err = card.update(b).unwrap_err();
            assert!(err.to_string().starts_with("transaction e1000001"), "{err}");
            assert_eq!(card, before);
        }
    }

    #[test]
    fn lateness_policy() {
        let mut card = CardState::new(TransactionParams {
            allowed_lateness_ms: 1_000,
            ..Default::default()
        })
        .unwrap();
        card.update(&tx(10_000, 5.0)).unwrap();
        let late = card.update(&tx(9_000, 7.0)).unwrap();
        assert_eq!(late.get("seconds_since_previous"), Some(0.0));
        assert_eq!(card.last_hour().summary().count(), 2);
        let before = card.clone();
        let err = card.update(&tx(8_999, 7.0)).unwrap_err();
        assert!(matches!(
            err,
            TransactionError::TooLate {
                newest_ms: 10_000,
                ..
            }
        ));
        assert_eq!(card.late_dropped(), 1);
        assert_eq!(card.last_day(), before.last_day());
    }

    #[test]
    fn round_trips_continue_identically() {
        let mut card = CardState::default();
        for i in 0..50i64 {
            let t = Transaction {
                category: format!("c{}", i % 5),
                latitude: (i as f64).sin() * 80.0,
                longitude: (i as f64).cos() * 170.0,
                ..tx(i * 600_000 - (i % 4) * 100_000, 1.0 + i as f64)
            };
            card.update(&t).unwrap();
        }
        let bytes = card.to_bytes();
        let mut a = CardState::decode(&bytes).unwrap();
        let json = serde_json::to_string(&card).unwrap();
        let mut b: CardState = serde_json::from_str(&json).unwrap();
        assert_eq!(a, card);
        assert_eq!(b, card);
        assert!(
            bytes.len() < json.len() / 2,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        for i in 50..80i64 {
            let t = tx(i * 600_000, 3.0);
            let fa = a.update(&t).unwrap();
            assert_eq!(fa, b.update(&t).unwrap());
            assert_eq!(fa, card.update(&t).unwrap());
        }
    }

    #[test]
    fn params_are_validated() {
        for p in [
            TransactionParams {
                recent_transactions: 1,
                ..Default::default()
            },
            TransactionParams {
                max_categories: 0,
                ..Default::default()
            },
            TransactionParams {
                max_categories: 5000,
                ..Default::default()
            },
        ] {
            assert!(CardState::new(p).is_err());
        }
    }
}
