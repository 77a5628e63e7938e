//! River's running quantile (`stats.Quantile`): the P² estimator of Jain & Chlamtac, with the
//! exact update order of River's Rust implementation so medians match bit for bit.

use serde::{Deserialize, Serialize};

/// Running estimate of the `q`-quantile without storing the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct P2Quantile {
    q: f64,
    desired_increment: [f64; 5],
    desired_position: [f64; 5],
    position: [f64; 5],
    heights: [f64; 5],
    n_heights: u8,
    sorted: bool,
}

impl P2Quantile {
    /// `q` must be in (0, 1) (checked by the callers' parameter validation).
    pub(crate) fn new(q: f64) -> Self {
        Self {
            q,
            desired_increment: [0.0, q / 2.0, q, (1.0 + q) / 2.0, 1.0],
            desired_position: [1.0, 1.0 + 2.0 * q, 1.0 + 4.0 * q, 3.0 + 2.0 * q, 5.0],
            position: [1.0, 2.0, 3.0, 4.0, 5.0],
            heights: [0.0; 5],
            n_heights: 0,
            sorted: false,
        }
    }

    pub(crate) fn q(&self) -> f64 {
        self.q
    }

    /// Whether at least one value was seen (River's `get()` is `None` before).
    pub(crate) fn is_empty(&self) -> bool {
        self.n_heights == 0
    }

    pub(crate) fn update(&mut self, x: f64) {
        if self.n_heights < 5 {
            self.heights[self.n_heights as usize] = x;
            self.n_heights += 1;
            return;
        }
        if !self.sorted {
            // NaN cannot reach here: callers reject non-finite values.
            self.heights.sort_by(f64::total_cmp);
            self.sorted = true;
        }
        let k = self.find_cell(x);
        for p in &mut self.position[k..] {
            *p += 1.0;
        }
        for (desired, increment) in self.desired_position.iter_mut().zip(self.desired_increment) {
            *desired += increment;
        }
        self.adjust();
    }

    /// The cell whose upper marker follows `x`, widening the extreme markers if needed.
    fn find_cell(&mut self, x: f64) -> usize {
        let h = &mut self.heights;
        if x < h[0] {
            h[0] = x;
            return 1;
        }
        if let Some(i) = (1..=4).find(|&i| h[i - 1] <= x && x < h[i]) {
            return i;
        }
        if h[4] < x {
            h[4] = x;
        }
        4
    }

    fn adjust(&mut self) {
        for i in 1..4 {
            let n = self.position[i];
            let q = self.heights[i];
            let d = self.desired_position[i] - n;
            if (d >= 1.0 && self.position[i + 1] - n > 1.0)
                || (d <= -1.0 && self.position[i - 1] - n < -1.0)
            {
                let d = 1.0f64.copysign(d);
                let (qp1, qm1) = (self.heights[i + 1], self.heights[i - 1]);
                let (np1, nm1) = (self.position[i + 1], self.position[i - 1]);
                let outer = d / (np1 - nm1);
                let inner_left = (n - nm1 + d) * (qp1 - q) / (np1 - n);
                let inner_right = (np1 - n - d) * (q - qm1) / (n - nm1);
                let parabolic = q + outer * (inner_left + inner_right);
                self.heights[i] = if qm1 < parabolic && parabolic < qp1 {
                    parabolic
                } else {
                    let j = if d > 0.0 { i + 1 } else { i - 1 };
                    q + d * (self.heights[j] - q) / (self.position[j] - n)
                };
                self.position[i] = n + d;
            }
        }
    }

    /// The current estimate (0 before any value, as River's Rust core).
    pub(crate) fn get(&self) -> f64 {
        if self.sorted {
            return self.heights[2];
        }
        let n = self.n_heights as usize;
        if n == 0 {
            return 0.0;
        }
        let mut seen = self.heights;
        seen[..n].sort_by(f64::total_cmp);
        let len = n as f64;
        let index = (len - 1.0).max(0.0).min(len * self.q) as usize;
        seen[index]
    }
}

#[cfg(test)]
mod tests {
    use super::P2Quantile;

    #[test]
    fn median_of_one_to_nine_matches_river() {
        // river.stats.Quantile(0.5) over [9, 7, 3, 2, 6, 1, 8, 5, 4] gives 5.0.
        let mut median = P2Quantile::new(0.5);
        for x in [9.0, 7.0, 3.0, 2.0, 6.0, 1.0, 8.0, 5.0, 4.0] {
            median.update(x);
        }
        assert_eq!(median.get(), 5.0);
    }
}
