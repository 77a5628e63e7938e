use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus};
use crate::InputError;
use crate::error::{ParameterError, check, check_input};

/// ADWIN's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdwinParams {
    /// Confidence of the cut test, in (0, 1). Smaller = fewer, surer detections. Default 0.002.
    pub delta: f64,
    /// Run the cut test every `clock` updates. Default 32.
    pub clock: u32,
    /// Buckets kept per histogram row before two are merged. Default 5.
    pub max_buckets: u32,
    /// Minimum size of each sub-window compared by the cut test. Default 5.
    pub min_window_length: u32,
    /// No test while the window holds `grace_period` values or fewer. Default 10.
    pub grace_period: u32,
}

impl Default for AdwinParams {
    fn default() -> Self {
        Self {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

impl AdwinParams {
    fn validate(&self) -> Result<(), ParameterError> {
        check(
            self.delta > 0.0 && self.delta < 1.0,
            "ADWIN",
            "delta",
            "in (0, 1)",
            self.delta,
        )?;
        check(self.clock >= 1, "ADWIN", "clock", "at least 1", self.clock)?;
        check(
            (1..=64).contains(&self.max_buckets),
            "ADWIN",
            "max_buckets",
            "in 1..=64",
            self.max_buckets,
        )?;
        check(
            self.min_window_length >= 1,
            "ADWIN",
            "min_window_length",
            "at least 1",
            self.min_window_length,
        )
    }
}

/// ADaptive WINdowing (Bifet & Gavaldà, 2007), bit-exact with River's `drift.ADWIN`.
///
/// ADWIN keeps a window of recent values, summarised in an exponential histogram, and drops
/// its oldest part whenever two sub-windows have means that differ more than chance allows.
/// As in River (and unlike the paper), the whole window is discarded on the update after a
/// drift.
///
/// ```
/// use anomaly_core::drift::{Adwin, DriftDetector, DriftStatus};
///
/// let mut adwin = Adwin::default();
/// let stream = (0..1000).map(|i| if i < 500 { 0.2 } else { 0.8 });
/// let first_drift = stream
///     .enumerate()
///     .find(|&(_, x)| adwin.update(x).unwrap() == DriftStatus::Drift)
///     .map(|(i, _)| i);
/// // River 0.26.1 reports the same step and width.
/// assert_eq!(first_drift, Some(543));
/// assert_eq!(adwin.width(), 80);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adwin {
    params: AdwinParams,
    width: f64,
    total: f64,
    /// Sum of squared deviations from the window mean (River calls it `variance`).
    m2: f64,
    /// Updates until the next scheduled cut scan (River's `tick % clock`, without a division
    /// on every update).
    ticks_to_scan: u32,
    n_detections: u64,
    histogram: Histogram,
    drift: bool,
}

/// ADWIN's exponential histogram: row `r` holds up to `max_buckets + 1` buckets of `2^r`
/// values each, as `(sum, m2)` pairs. Every row is a fixed-size ring in one flat array, so
/// merging the two oldest buckets of a row moves no data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "HistogramRows", into = "HistogramRows")]
struct Histogram {
    capacity: usize,
    sums: Vec<f64>,
    m2s: Vec<f64>,
    /// Per row: index of its oldest bucket within the row's ring.
    heads: Vec<usize>,
    lens: Vec<usize>,
}

impl Histogram {
    fn new(max_buckets: u32) -> Self {
        let capacity = max_buckets as usize + 1;
        Self {
            capacity,
            sums: vec![0.0; capacity],
            m2s: vec![0.0; capacity],
            heads: vec![0],
            lens: vec![0],
        }
    }

    fn rows(&self) -> usize {
        self.lens.len()
    }

    /// Flat index of the `k`-th oldest bucket of row `r`.
    #[inline]
    fn slot(&self, r: usize, k: usize) -> usize {
        let mut i = self.heads[r] + k;
        if i >= self.capacity {
            i -= self.capacity;
        }
        r * self.capacity + i
    }

    #[inline]
    fn push(&mut self, r: usize, sum: f64, m2: f64) {
        if r == self.rows() {
            self.add_row();
        }
        let i = self.slot(r, self.lens[r]);
        self.sums[i] = sum;
        self.m2s[i] = m2;
        self.lens[r] += 1;
    }

    #[inline]
    fn drop_oldest(&mut self, r: usize, count: usize) {
        self.lens[r] -= count;
        self.heads[r] += count;
        if self.heads[r] >= self.capacity {
            self.heads[r] -= self.capacity;
        }
    }

    #[cold]
    fn add_row(&mut self) {
        self.sums.resize(self.sums.len() + self.capacity, 0.0);
        self.m2s.resize(self.m2s.len() + self.capacity, 0.0);
        self.heads.push(0);
        self.lens.push(0);
    }

    fn pop_last_row(&mut self) {
        self.sums.truncate(self.sums.len() - self.capacity);
        self.m2s.truncate(self.m2s.len() - self.capacity);
        self.heads.pop();
        self.lens.pop();
    }
}

/// Equal when they hold the same buckets, wherever the rings happen to start.
impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity
            && self.lens == other.lens
            && (0..self.rows()).all(|r| {
                (0..self.lens[r]).all(|k| {
                    let (i, j) = (self.slot(r, k), other.slot(r, k));
                    self.sums[i].to_bits() == other.sums[j].to_bits()
                        && self.m2s[i].to_bits() == other.m2s[j].to_bits()
                })
            })
    }
}

/// The serialized form of [`Histogram`]: buckets per row, oldest first.
#[derive(Serialize, Deserialize)]
struct HistogramRows {
    capacity: usize,
    rows: Vec<Vec<(f64, f64)>>,
}

impl From<Histogram> for HistogramRows {
    fn from(h: Histogram) -> Self {
        let rows = (0..h.rows())
            .map(|r| {
                (0..h.lens[r])
                    .map(|k| {
                        let i = h.slot(r, k);
                        (h.sums[i], h.m2s[i])
                    })
                    .collect()
            })
            .collect();
        Self {
            capacity: h.capacity,
            rows,
        }
    }
}

impl TryFrom<HistogramRows> for Histogram {
    type Error = String;

    fn try_from(rows: HistogramRows) -> Result<Self, String> {
        if !(2..=65).contains(&rows.capacity) {
            return Err(format!("bucket capacity {} outside 2..=65", rows.capacity));
        }
        if rows.rows.is_empty() || rows.rows.len() > 64 {
            return Err(format!(
                "{} histogram rows, expected 1..=64",
                rows.rows.len()
            ));
        }
        let mut h = Histogram {
            capacity: rows.capacity,
            sums: Vec::new(),
            m2s: Vec::new(),
            heads: Vec::new(),
            lens: Vec::new(),
        };
        for (r, row) in rows.rows.iter().enumerate() {
            if row.len() >= rows.capacity {
                return Err(format!(
                    "row {r} holds {} buckets, at most {}",
                    row.len(),
                    rows.capacity - 1
                ));
            }
            if row.iter().any(|(s, v)| !s.is_finite() || !v.is_finite()) {
                return Err(format!("row {r} holds a non-finite bucket"));
            }
            h.heads.push(0);
            h.lens.push(0);
            h.sums.resize(h.sums.len() + h.capacity, 0.0);
            h.m2s.resize(h.m2s.len() + h.capacity, 0.0);
            for &(s, v) in row {
                h.push(r, s, v);
            }
        }
        Ok(h)
    }
}

impl Default for Adwin {
    fn default() -> Self {
        Self::fresh(AdwinParams::default())
    }
}

impl Adwin {
    /// Builds ADWIN with the given parameters.
    pub fn new(params: AdwinParams) -> Result<Self, ParameterError> {
        params.validate()?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: AdwinParams) -> Self {
        Self {
            params,
            width: 0.0,
            total: 0.0,
            m2: 0.0,
            ticks_to_scan: params.clock,
            n_detections: 0,
            histogram: Histogram::new(params.max_buckets),
            drift: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &AdwinParams {
        &self.params
    }

    /// Number of values in the current window.
    pub fn width(&self) -> u64 {
        self.width as u64
    }

    /// Sum of the values in the current window.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Mean of the window (0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.width == 0.0 {
            0.0
        } else {
            self.total / self.width
        }
    }

    /// Sum of squared deviations from the window mean, as River's `ADWIN.variance` reports it
    /// (River documents it as the variance, but does not divide by the width).
    pub fn variance(&self) -> f64 {
        self.m2
    }

    /// Population variance of the window, `variance() / width()` (0 when empty).
    pub fn variance_in_window(&self) -> f64 {
        if self.width == 0.0 {
            0.0
        } else {
            self.m2 / self.width
        }
    }

    /// Detections since the last reset: 1 on a drift step, 0 otherwise (as River, which
    /// discards the detector state after every drift).
    pub fn n_detections(&self) -> u64 {
        self.n_detections
    }

    #[inline]
    fn insert(&mut self, x: f64) {
        self.width += 1.0;
        if self.width > 1.0 {
            let d = x - self.total / (self.width - 1.0);
            self.m2 += (self.width - 1.0) * d * d / self.width;
        }
        self.total += x;
        // After the arithmetic, so the histogram work overlaps the divisions' latency.
        self.histogram.push(0, x, 0.0);
        self.compress();
    }

    #[inline]
    fn compress(&mut self) {
        let full = self.params.max_buckets as usize + 1;
        let h = &mut self.histogram;
        let mut r = 0;
        while h.lens[r] == full {
            let m = (1u64 << r) as f64;
            // Dividing by a power of two equals multiplying by its (exact) reciprocal.
            let inv_m = 1.0 / m;
            let (i0, i1) = (h.slot(r, 0), h.slot(r, 1));
            let (s0, v0, s1, v1) = (h.sums[i0], h.m2s[i0], h.sums[i1], h.m2s[i1]);
            let (mu0, mu1) = (s0 * inv_m, s1 * inv_m);
            let merged_m2 = v0 + v1 + m * 0.5 * (mu0 - mu1) * (mu0 - mu1);
            h.push(r + 1, s0 + s1, merged_m2);
            h.drop_oldest(r, 2);
            if h.lens[r + 1] < full {
                break;
            }
            r += 1;
        }
    }

    /// Runs the cut scan if the clock says so; true if at least one cut was made.
    fn detect(&mut self) -> bool {
        if self.ticks_to_scan > 1 {
            self.ticks_to_scan -= 1;
            return false;
        }
        self.ticks_to_scan = self.params.clock;
        if self.width <= f64::from(self.params.grace_period) {
            return false;
        }
        let mut changed = false;
        while self.scan_once() {
            changed = true;
            self.delete_oldest_bucket();
        }
        changed
    }

    /// One pass over the buckets, oldest to newest; true at the first split that passes the
    /// cut test. The newest bucket is never a split point.
    fn scan_once(&self) -> bool {
        let mwl = f64::from(self.params.min_window_length);
        let cut = CutTest::new(self.width, self.m2, self.params.delta, mwl);
        let h = &self.histogram;
        let (mut n0, mut n1, mut u0, mut u1) = (0.0, self.width, 0.0, self.total);
        for r in (0..h.rows()).rev() {
            let m = (1u64 << r) as f64;
            let len = h.lens[r];
            for k in 0..len {
                let s = h.sums[h.slot(r, k)];
                n0 += m;
                n1 -= m;
                u0 += s;
                u1 -= s;
                if r == 0 && k + 1 == len {
                    return false;
                }
                if n1 >= mwl && n0 >= mwl && cut.holds(n0, n1, u0 / n0 - u1 / n1) {
                    return true;
                }
            }
        }
        false
    }

    fn delete_oldest_bucket(&mut self) {
        let h = &mut self.histogram;
        let last = h.rows() - 1;
        let m = (1u64 << last) as f64;
        let i = h.slot(last, 0);
        let (s, v) = (h.sums[i], h.m2s[i]);
        self.width -= m;
        self.total -= s;
        let mu = s / m;
        let mu_w = self.total / self.width;
        self.m2 -= v + m * self.width * (mu - mu_w) * (mu - mu_w) / (m + self.width);
        h.drop_oldest(last, 1);
        if h.lens[last] == 0 && last > 0 {
            h.pop_last_row();
        }
    }
}

/// The Hoeffding-style cut test of one scan pass, with its per-pass constants.
///
/// Most splits are nowhere near the threshold, so each is first screened with a bound that
/// needs one division and no square root; only splits the screen cannot rule out are
/// evaluated with River's exact formula (and operation order), so decisions stay bit-exact.
struct CutTest {
    delta_prime: f64,
    variance_in_window: f64,
    mwl: f64,
    /// `2 * variance_in_window * delta_prime`: `sqrt(linear * m_recip)` is the first term of
    /// epsilon.
    linear: f64,
    /// `(2/3) * delta_prime`: `offset * m_recip` is the second term of epsilon.
    offset: f64,
}

/// Keeps the screen conservative: far larger than the few ulps of rounding it must absorb.
const SCREEN_MARGIN: f64 = 1.0 - 1e-9;

impl CutTest {
    fn new(width: f64, m2: f64, delta: f64, mwl: f64) -> Self {
        let delta_prime = (2.0 * width.ln() / delta).ln();
        let variance_in_window = m2 / width;
        Self {
            delta_prime,
            variance_in_window,
            mwl,
            linear: 2.0 * variance_in_window * delta_prime,
            offset: 2.0 / 3.0 * delta_prime,
        }
    }

    #[inline]
    fn holds(&self, n0: f64, n1: f64, mean_diff: f64) -> bool {
        // Screen: epsilon^2 >= linear * m_recip + (offset * m_recip)^2, since both terms of
        // epsilon are non-negative; below that bound there is certainly no cut.
        let (a, b) = (n0 - self.mwl + 1.0, n1 - self.mwl + 1.0);
        let m_recip_approx = (a + b) / (a * b);
        let second = self.offset * m_recip_approx;
        let epsilon_sq_lower = self.linear * m_recip_approx + second * second;
        if mean_diff * mean_diff < epsilon_sq_lower * SCREEN_MARGIN {
            return false;
        }
        let m_recip = 1.0 / a + 1.0 / b;
        let dp = self.delta_prime;
        let epsilon =
            (2.0 * m_recip * self.variance_in_window * dp).sqrt() + 2.0 / 3.0 * dp * m_recip;
        mean_diff.abs() > epsilon
    }
}

impl DriftDetector for Adwin {
    type Input = f64;
    const NAME: &'static str = "ADWIN";

    #[inline]
    fn update(&mut self, x: f64) -> Result<DriftStatus, InputError> {
        let x = check_input(Self::NAME, x)?;
        if self.drift {
            self.reset();
        }
        self.insert(x);
        self.drift = self.detect();
        if self.drift {
            self.n_detections += 1;
        }
        Ok(DriftStatus::from_flags(self.drift, false))
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn warning_detected(&self) -> bool {
        false
    }

    fn reset(&mut self) {
        *self = Self::fresh(self.params);
    }
}
