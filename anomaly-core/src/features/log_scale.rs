//! The arithmetic of the transaction features' last step: a logarithm scaled by its cap's,
//! `min(ln(1 + v) / ln(1 + cap), 1)`, rounded to 4 decimals.
//!
//! Six of the eleven features take that shape, and libm's `log1p` and `round` were 6% of the
//! main job's instructions, on the thread that reads events (its critical path). Both are
//! replaced here by inline arithmetic that gives the same bits: `round` exactly, and the
//! logarithm through a screen. A feature is rounded to 4 decimals, so a logarithm within
//! `1e-13 * max(1, l)` of libm's rounds the same way unless the scaled value lies within a
//! hair of a half-way point (a margin of 2e-6 of the values, none of the main job's 1.2 M);
//! only then is libm's `log1p` taken after all. Zero also goes to libm (4,054 values there: a
//! card's first distance and speed, and repeated locations).
//!
//! Exact on targets whose `f64` arithmetic rounds each operation to double precision
//! (x86-64's SSE2, aarch64, every tier-1 target), not on x87's extended precision.

use std::f64::consts::LN_2;

/// `round(x * 1e4) / 1e4` after clipping to `[0, 1]`.
#[inline]
pub(super) fn round4(v: f64) -> f64 {
    round_units(v.clamp(0.0, 1.0) * 1e4) / 1e4
}

/// 2^52: adding and taking it away rounds a number below it to a whole one, ties to even.
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;

/// `units.round()` for `units` in `[0, 1e4]` (or NaN), bit for bit.
#[inline]
fn round_units(units: f64) -> f64 {
    // `round` without its libm call (baseline x86-64 has no rounding instruction). Both
    // steps of `even` are exact below 2^52, and so is `units - even`, so a tie rounded down
    // shows as exactly 0.5 and goes up instead, as `round` sends ties away from zero. NaN
    // stays NaN; `copysign` keeps `-0.0`.
    let even = nearest_even(units);
    let away = if units - even == 0.5 {
        even + 1.0
    } else {
        even
    };
    away.copysign(units)
}

/// The whole number nearest `units`, ties to even, for `units` in `[0, 2^52)`.
#[inline]
fn nearest_even(units: f64) -> f64 {
    (units + TWO_POW_52) - TWO_POW_52
}

/// Whether `units` (an inline logarithm, scaled) lies too near a half-way point for the inline
/// value to decide its rounding; `nearest` is its nearest whole number.
#[inline]
fn near_tie(units: f64, nearest: f64) -> bool {
    0.5 - (units - nearest).abs() <= TIE_MARGIN
}

/// `min(ln1p_v / ln1p_cap, 1)`: a logarithm scaled by its cap's.
#[inline]
pub(super) fn scaled(ln1p_v: f64, ln1p_cap: f64) -> f64 {
    (ln1p_v / ln1p_cap).min(1.0)
}

/// Bits of the mantissa that pick a table entry: `[1, 2)` cut into 128 intervals.
const TABLE_BITS: u32 = 7;
const INTERVALS: usize = 1 << TABLE_BITS;
const MANTISSA_BITS: u32 = 52;
const MANTISSA_MASK: u64 = (1 << MANTISSA_BITS) - 1;

/// How close (in units of the fourth decimal) a scaled logarithm may come to a half-way point
/// before libm decides. The inline logarithm `l` is within `1e-13 * max(1, l)` of libm's (the
/// tests sweep it); only `l` up to twice the cap's logarithm `c` matters (above `c`, both
/// scale to 1), and `c >= 1` for every cap, so the two scaled values differ by at most
/// `1e-13 * max(1, 2c) * 1e4 / c <= 2e-9` units, plus a few ulps of 1e4: the margin is 300
/// times that.
const TIE_MARGIN: f64 = 1e-6;

/// `ln(1 + v)` with a table of 128 points of `[1, 2)` and a short series around the nearest,
/// and the features' scaled, rounded logarithms through it.
pub(super) struct Ln1p {
    /// `(1 / c, ln c)` at each interval's centre `c`.
    centres: [(f64, f64); INTERVALS],
}

impl Ln1p {
    pub(super) fn new() -> Self {
        Self {
            centres: std::array::from_fn(|j| {
                let centre = 1.0 + (j as f64 + 0.5) / INTERVALS as f64;
                (1.0 / centre, centre.ln())
            }),
        }
    }

    /// `ln(1 + v)` for `v` in `(0, 1e300)`, within `1e-13 * max(1, ln(1 + v))` of
    /// `v.ln_1p()`.
    ///
    /// `1 + v = 2^e * m` with `m` in `[1, 2)`, and `ln m = ln c + ln(1 + r)` for the centre
    /// `c` of `m`'s interval and `r = m / c - 1`, `|r| <= 1/256`; five terms of the series of
    /// `ln(1 + r)` leave an error below `r^6 / 6 < 1e-15`. Forming `1 + v` loses at most half
    /// an ulp of it, 1.2e-16 of the logarithm.
    #[inline]
    fn ln1p(&self, v: f64) -> f64 {
        let x = 1.0 + v;
        let bits = x.to_bits();
        // x >= 1, normal and positive: the top bits are the biased exponent.
        let exponent = (bits >> MANTISSA_BITS) as i64 - 1023;
        let interval = (bits >> (MANTISSA_BITS - TABLE_BITS)) as usize & (INTERVALS - 1);
        let mantissa = f64::from_bits((bits & MANTISSA_MASK) | 1f64.to_bits());
        let (inverse, ln_centre) = self.centres[interval];
        let r = mantissa * inverse - 1.0;
        let series = r * (1.0 + r * (-0.5 + r * (1.0 / 3.0 + r * (-0.25 + r * 0.2))));
        exponent as f64 * LN_2 + ln_centre + series
    }

    /// `round4(scaled(v.max(0.0).ln_1p(), ln1p_cap))`, bit for bit, for `ln1p_cap >= 1`.
    #[inline]
    pub(super) fn scaled_rounded(&self, v: f64, ln1p_cap: f64) -> f64 {
        let libm = |v: f64| round4(scaled(v.ln_1p(), ln1p_cap));
        let v = v.max(0.0);
        // 0 (of either sign), huge values and infinity go to libm: the series is for the
        // rest. (`max` has already turned NaN into 0.)
        if !(v > 0.0 && v < 1e300) {
            return libm(v);
        }
        let units = scaled(self.ln1p(v), ln1p_cap).clamp(0.0, 1.0) * 1e4;
        let nearest = nearest_even(units);
        if near_tie(units, nearest) {
            libm(v)
        } else {
            nearest / 1e4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_up(x: f64) -> f64 {
        f64::from_bits(x.to_bits() + 1)
    }

    fn ulp_down(x: f64) -> f64 {
        f64::from_bits(x.to_bits() - 1)
    }

    /// The inline rounding gives `f64::round`'s bits on its whole domain's edges: every
    /// half-way point, its neighbours one ulp away, whole numbers, `-0.0` and NaN; and
    /// `round4` matches the libm formula on a dense grid of inputs.
    #[test]
    fn inline_rounding_is_libm_round_bit_for_bit() {
        for twice in 0..=20_000u32 {
            let x = f64::from(twice) / 2.0;
            let below = if x > 0.0 { ulp_down(x) } else { x };
            for units in [x, ulp_up(x), below] {
                if units <= 1e4 {
                    let (ours, libm) = (round_units(units), units.round());
                    assert_eq!(ours.to_bits(), libm.to_bits(), "{units:e}");
                }
            }
        }
        for units in [-0.0, 0.49999999999999994, f64::MIN_POSITIVE, 5e-324, 1e4] {
            assert_eq!(
                round_units(units).to_bits(),
                units.round().to_bits(),
                "{units:e}"
            );
        }
        assert!(round_units(f64::NAN).is_nan());
        let libm = |v: f64| (v.clamp(0.0, 1.0) * 1e4).round() / 1e4;
        let grid = (0..=2_000_000).map(|i| f64::from(i) / 1_999_999.0);
        let edges = [
            -1.0,
            -0.0,
            1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.00005,
            0.99995,
        ];
        for v in grid.chain(edges) {
            assert_eq!(round4(v).to_bits(), libm(v).to_bits(), "{v:e}");
        }
        assert!(round4(f64::NAN).is_nan());
    }

    /// Values of `v` spread over every binade the series serves, and through each table
    /// interval: 1e-12..1e300 geometrically, plus a linear sweep of `[0, 4]`.
    fn sweep() -> impl Iterator<Item = f64> {
        let geometric = (0..2_000_000).map(|i| 10f64.powf(-12.0 + 312.0 * f64::from(i) / 2e6));
        let linear = (1..1_000_000).map(|i| 4.0 * f64::from(i) / 1e6);
        geometric.chain(linear).filter(|&v| v < 1e300)
    }

    /// The bound the screen's margin is built on.
    #[test]
    fn the_inline_logarithm_is_within_1e_13_of_libm() {
        let table = Ln1p::new();
        let mut worst = (0.0, 0.0);
        for v in sweep() {
            let exact = v.ln_1p();
            let error = (table.ln1p(v) - exact).abs() / exact.max(1.0);
            if error > worst.0 {
                worst = (error, v);
            }
        }
        assert!(worst.0 < 1e-13, "error {:e} at v = {:e}", worst.0, worst.1);
    }

    /// The screened feature equals libm's formula everywhere, for the caps of the features:
    /// on a sweep, at the edges, a few ulps either side of half-way points (there the screen
    /// must hand over) and on both sides of the screen's margin.
    #[test]
    fn scaled_rounded_logarithms_are_libm_bit_for_bit() {
        use super::super::transaction::{AMOUNT_CAP, DISTANCE_CAP_KM, GAP_CAP_S, SPEED_CAP_KMH};
        let table = Ln1p::new();
        let caps = [AMOUNT_CAP, GAP_CAP_S, DISTANCE_CAP_KM, SPEED_CAP_KMH].map(f64::ln_1p);
        let libm = |v: f64, cap: f64| round4(scaled(v.max(0.0).ln_1p(), cap));
        let check = |v: f64, cap: f64| {
            let (ours, reference) = (table.scaled_rounded(v, cap), libm(v, cap));
            assert_eq!(
                ours.to_bits(),
                reference.to_bits(),
                "v = {v:e}, cap = {cap}"
            );
        };
        let handed_over = |v: f64, cap: f64| {
            let units = scaled(table.ln1p(v), cap) * 1e4;
            near_tie(units, nearest_even(units))
        };
        for &cap in &caps {
            for v in sweep().step_by(7) {
                check(v, cap);
            }
            for v in [
                0.0,
                -0.0,
                -5.0,
                f64::NAN,
                f64::INFINITY,
                1e300,
                1e100,
                5e-324,
            ] {
                check(v, cap);
            }
            let (mut inside, mut outside) = (0, 0);
            for k in (0..10_000).step_by(37) {
                // v with ln(1 + v) / cap * 1e4 = k + 0.5, its neighbours, and values at
                // distances around the margin on both sides.
                let at = |units: f64| (units / 1e4 * cap).exp_m1();
                let tie = at(f64::from(k) + 0.5);
                let mut v = tie;
                for _ in 0..8 {
                    v = ulp_down(v);
                }
                let neighbours = (0..16).map(|_| {
                    v = ulp_up(v);
                    v
                });
                let around_margin = [-4.0, -1.5, -1.1, -0.9, -0.5, 0.5, 0.9, 1.1, 1.5, 4.0]
                    .map(|m| at(f64::from(k) + 0.5 + m * TIE_MARGIN));
                for v in neighbours.chain(around_margin) {
                    check(v, cap);
                    if handed_over(v, cap) {
                        inside += 1;
                    } else {
                        outside += 1;
                    }
                }
            }
            assert!(
                inside > 0 && outside > 0,
                "{inside} inside, {outside} outside"
            );
        }
    }
}
