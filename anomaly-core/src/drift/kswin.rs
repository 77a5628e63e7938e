use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus};
use crate::InputError;
use crate::error::{ParameterError, check, check_input};
use crate::rng::PyRandom;

/// KSWIN's parameters, with River's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KswinParams {
    /// p-value at or below which (with a KS statistic above 0.1) a drift is reported, in
    /// [0, 1]. Default 0.005.
    pub alpha: f64,
    /// Number of recent values kept. Default 100.
    pub window_size: u32,
    /// Size of both samples compared: the newest `stat_size` values against as many drawn
    /// from the rest of the window. At least 1 and less than `window_size`. Default 30.
    pub stat_size: u32,
    /// Seed of the sampling generator. `None` draws one from the OS at construction; the same
    /// seed gives River's exact results. Default `None`.
    pub seed: Option<u64>,
    /// Values to start the window with (River's `window`); the newest `window_size` are kept.
    /// A reset empties the window regardless. Default empty.
    pub window: Vec<f64>,
}

impl Default for KswinParams {
    fn default() -> Self {
        Self {
            alpha: 0.005,
            window_size: 100,
            stat_size: 30,
            seed: None,
            window: Vec::new(),
        }
    }
}

/// Kolmogorov-Smirnov WINdowing (Raab et al., 2020), bit-exact with River's `drift.KSWIN`
/// for a given seed.
///
/// Once the window is full, every update compares the newest `stat_size` values with as many
/// values sampled from the older part of the window by an exact two-sample KS test.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, Kswin, KswinParams};
///
/// let mut kswin = Kswin::new(KswinParams { seed: Some(42), ..KswinParams::default() })?;
/// let first_drift = (0..1000).position(|i| {
///     let x = if i < 500 { (i % 7) as f64 / 7.0 } else { 3.0 + (i % 7) as f64 / 7.0 };
///     kswin.update(x).unwrap().is_drift()
/// });
/// assert!(first_drift.is_some_and(|i| i >= 500));
/// # Ok::<(), anomaly_core::ParameterError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kswin {
    params: KswinParams,
    /// The seed actually used (drawn from the OS when `params.seed` is `None`).
    seed: u64,
    rng: PyRandom,
    window: VecDeque<f64>,
    p_value: f64,
    statistic: f64,
    drift: bool,
    #[serde(skip)]
    scratch: Scratch,
}

/// Buffers reused across updates so the hot path does not allocate.
#[derive(Clone, Debug, Default)]
struct Scratch {
    indices: Vec<u32>,
    reference: Vec<f64>,
    recent: Vec<f64>,
}

/// Scratch buffers hold no state: two detectors are equal whatever their buffers hold.
impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Kswin {
    /// Builds KSWIN with the given parameters.
    pub fn new(params: KswinParams) -> Result<Self, ParameterError> {
        check(
            (0.0..=1.0).contains(&params.alpha),
            "KSWIN",
            "alpha",
            "in [0, 1]",
            params.alpha,
        )?;
        check(
            params.stat_size >= 1,
            "KSWIN",
            "stat_size",
            "at least 1",
            params.stat_size,
        )?;
        check(
            params.window_size > params.stat_size,
            "KSWIN",
            "window_size",
            "greater than stat_size",
            params.window_size,
        )?;
        check(
            params
                .window
                .iter()
                .all(|x| check_input("KSWIN", *x).is_ok()),
            "KSWIN",
            "window",
            "finite values of magnitude at most 1e100",
            "a non-finite or too large value",
        )?;
        let seed = params.seed.unwrap_or_else(rand::random);
        let mut kswin = Self::fresh(params, seed);
        let keep = kswin.params.window_size as usize;
        let skip = kswin.params.window.len().saturating_sub(keep);
        kswin.window.extend(kswin.params.window.iter().skip(skip));
        Ok(kswin)
    }

    fn fresh(params: KswinParams, seed: u64) -> Self {
        Self {
            window: VecDeque::with_capacity(params.window_size as usize),
            rng: PyRandom::new(seed),
            params,
            seed,
            p_value: 0.0,
            statistic: 0.0,
            drift: false,
            scratch: Scratch::default(),
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &KswinParams {
        &self.params
    }

    /// The seed in use (drawn from the OS if none was given).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// p-value of the latest KS test; 0 until the window first fills and after each reset
    /// (as River's `p_value`).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }

    /// KS statistic `D` of the latest test (0 before any).
    pub fn statistic(&self) -> f64 {
        self.statistic
    }

    /// Number of values in the window.
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    fn test_window(&mut self) -> bool {
        let window_size = self.params.window_size;
        let stat_size = self.params.stat_size;
        let s = &mut self.scratch;
        self.rng
            .sample_range(window_size - stat_size, stat_size, &mut s.indices);
        s.reference.clear();
        s.reference
            .extend(s.indices.iter().map(|&i| self.window[i as usize]));
        s.recent.clear();
        s.recent
            .extend(self.window.range((window_size - stat_size) as usize..));
        let (statistic, p_value) = ks_two_sample_equal_sizes(&mut s.reference, &mut s.recent);
        self.statistic = statistic;
        self.p_value = p_value;
        p_value <= self.params.alpha && statistic > 0.1
    }
}

/// Exact two-sided two-sample Kolmogorov-Smirnov test for two samples of the same size `n`,
/// as `scipy.stats.ks_2samp(method="exact")` computes it. Returns `(D, p-value)`.
/// Sorts both slices in place.
fn ks_two_sample_equal_sizes(a: &mut [f64], b: &mut [f64]) -> (f64, f64) {
    let n = a.len();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    // Largest gap between the two right-continuous empirical CDFs, in counts.
    let (mut i, mut j, mut gap) = (0usize, 0usize, 0usize);
    while i < n && j < n {
        let t = a[i].min(b[j]);
        while i < n && a[i] <= t {
            i += 1;
        }
        while j < n && b[j] <= t {
            j += 1;
        }
        gap = gap.max(i.abs_diff(j));
    }
    let h = gap;
    let size = n as f64;
    let statistic = h as f64 / size;
    if h == 0 {
        return (statistic, 1.0);
    }
    // Probability that the two-sided path leaves the band |i - j| < h (Hodges' recursion,
    // as scipy's `_compute_prob_outside_square`).
    let hf = h as f64;
    let mut p_outside = 0.0;
    let mut k = n / h;
    loop {
        let kh = k as f64 * hf;
        let mut term = 1.0;
        for step in 0..h {
            let j = step as f64;
            term = (size - kh - j) * term / (size + kh + j + 1.0);
        }
        p_outside = term * (1.0 - p_outside);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    (statistic, (2.0 * p_outside).clamp(0.0, 1.0))
}

impl DriftDetector for Kswin {
    type Input = f64;
    const NAME: &'static str = "KSWIN";

    fn update(&mut self, x: f64) -> Result<DriftStatus, InputError> {
        let x = check_input(Self::NAME, x)?;
        if self.drift {
            self.reset();
        }
        if self.window.len() == self.params.window_size as usize {
            self.window.pop_front();
        }
        self.window.push_back(x);
        self.drift = self.window.len() == self.params.window_size as usize && self.test_window();
        Ok(self.status())
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn warning_detected(&self) -> bool {
        false
    }

    fn reset(&mut self) {
        let scratch = std::mem::take(&mut self.scratch);
        *self = Self::fresh(self.params.clone(), self.seed);
        self.scratch = scratch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_p_value_one() {
        let mut a = vec![1.0, 2.0, 3.0];
        let mut b = a.clone();
        assert_eq!(ks_two_sample_equal_sizes(&mut a, &mut b), (0.0, 1.0));
    }

    #[test]
    fn disjoint_samples_match_scipy() {
        // scipy.stats.ks_2samp([0,1,2,3,4], [10,11,12,13,14], method="exact").pvalue
        // = 2 / C(10, 5) = 0.007936507936507936
        let mut a = vec![0.0, 1.0, 2.0, 3.0, 4.0];
        let mut b = vec![10.0, 11.0, 12.0, 13.0, 14.0];
        let (d, p) = ks_two_sample_equal_sizes(&mut a, &mut b);
        assert_eq!(d, 1.0);
        approx::assert_relative_eq!(p, 2.0 / 252.0, max_relative = 1e-12);
    }
}
