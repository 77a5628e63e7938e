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

impl Mean {
    /// Removes `x` (River's `Mean.revert` with weight 1).
    #[inline]
    pub(crate) fn revert(&mut self, x: f64) {
        self.n -= 1.0;
        if self.n == 0.0 {
            self.mean = 0.0;
        } else {
            self.mean -= (1.0 / self.n) * (x - self.mean);
        }
    }
}

impl Var {
    /// Removes `x` (River's `Var.revert`): may leave a tiny negative sum of squares when the
    /// remaining values are all equal, as River's does.
    #[inline]
    pub(crate) fn revert(&mut self, x: f64) {
        let old_mean = self.mean.mean;
        self.mean.revert(x);
        self.sum_sq -= (x - old_mean) * (x - self.mean.mean);
    }
}

/// `d ** 2` as Python computes it: through libm's `pow`, which is not always `d * d` in the
/// last bit (hence the exponent LLVM cannot see).
#[inline]
pub(crate) fn python_square(d: f64) -> f64 {
    d.powf(std::hint::black_box(2.0))
}

/// The C library's `erf`, which is what Python's `math.erf` calls: Rust's standard library has
/// no `erf`, and other implementations differ from it in the last bits.
#[inline]
pub(crate) fn c_erf(x: f64) -> f64 {
    libm_erf::erf(x)
}

// The one foreign call of the crate. `erf` is pure, takes and returns a double, and is in
// every C library Rust's std links on the platforms it supports (glibc, musl, macOS, UCRT).
#[allow(unsafe_code)]
mod libm_erf {
    unsafe extern "C" {
        pub(super) safe fn erf(x: f64) -> f64;
    }
}
