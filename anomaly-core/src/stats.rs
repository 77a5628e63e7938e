//! Running statistics with River's exact update formulas (operation order matters for
//! bit-exactness with River, so these are not interchangeable with textbook variants).

use serde::{Deserialize, Serialize};

/// Running mean, River's `stats.Mean`: `mean += (1/n) * (x - mean)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mean {
    pub(crate) n: f64,
    pub(crate) mean: f64,
}

impl Mean {
    #[inline]
    pub(crate) fn update(&mut self, x: f64) {
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
    }
}

/// Running sample variance (ddof = 1), River's `stats.Var` (Welford).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Var {
    pub(crate) mean: Mean,
    pub(crate) sum_sq: f64,
}

impl Var {
    #[inline]
    pub(crate) fn update(&mut self, x: f64) {
        let old_mean = self.mean.mean;
        self.mean.update(x);
        self.sum_sq += (x - old_mean) * (x - self.mean.mean);
    }

    /// `S / (n - 1)` once two values were seen, else 0.
    #[inline]
    pub(crate) fn get(&self) -> f64 {
        if self.mean.n > 1.0 {
            self.sum_sq / (self.mean.n - 1.0)
        } else {
            0.0
        }
    }
}

/// `x ** 0.5` as Python computes it: through libm's `pow`, which can differ from `sqrt` in the
/// last bit. (LLVM rewrites `powf(x, 0.5)` as `sqrt(x)` when it sees the constant, hence the
/// opaque exponent.)
#[inline]
pub(crate) fn python_pow_half(x: f64) -> f64 {
    x.powf(std::hint::black_box(0.5))
}
