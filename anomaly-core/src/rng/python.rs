use serde::{Deserialize, Serialize};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's `random.Random` (MT19937), reproduced bit for bit.
///
/// River draws KSWIN's reference samples and HalfSpaceTrees' splits from `random.Random(seed)`;
/// this type makes the same draws, so a detector seeded like River's gives River's answers.
/// Only the operations River uses are provided: [`random`](Self::random),
/// [`getrandbits`](Self::getrandbits), [`randbelow`](Self::randbelow),
/// [`uniform`](Self::uniform), [`choices_weighted`](Self::choices_weighted) and
/// [`sample_range`](Self::sample_range).
///
/// ```
/// use anomaly_core::rng::PyRandom;
///
/// // Python: random.Random(42).random() == 0.6394267984578837
/// let mut rng = PyRandom::new(42);
/// assert_eq!(rng.random(), 0.6394267984578837);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyRandom {
    state: Vec<u32>,
    index: usize,
}

impl PyRandom {
    /// Seeds the generator as `random.Random(seed)` does for a non-negative integer seed
    /// (`init_by_array` over the seed's 32-bit little-endian words).
    pub fn new(seed: u64) -> Self {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        let key: &[u32] = if high == 0 { &[low] } else { &[low, high] };
        let mut rng = Self::init_genrand(19_650_218);
        rng.init_by_array(key);
        rng
    }

    fn init_genrand(seed: u32) -> Self {
        let mut state = vec![0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    fn init_by_array(&mut self, key: &[u32]) {
        let mt = &mut self.state;
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        self.index = N;
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mut next = mt[(k + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            mt[k] = next;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output of the Mersenne Twister.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random.random()`: a double in `[0, 1)` with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// `random.getrandbits(k)` for `1 <= k <= 32`.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.next_u32() >> (32 - k)
    }

    /// `random._randbelow(n)`: a uniform integer in `[0, n)` by rejection sampling, drawing
    /// `bit_length(n)` bits at a time exactly as CPython does. `n` must be in `1..=2^31`.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.uniform(a, b)`, computed as `a + (b - a) * random()`.
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.random()
    }

    /// `random.choices(range(len(weights)), weights)[0]`: the index of one weighted draw.
    ///
    /// Uses one `random()` call, cumulative float sums in order and `bisect_right`, as CPython.
    /// `weights` must be non-empty.
    pub fn choices_weighted(&mut self, weights: &[f64]) -> usize {
        let mut total = 0.0;
        let mut cumulative = Vec::with_capacity(weights.len());
        for w in weights {
            total += w;
            cumulative.push(total);
        }
        let target = self.random() * total;
        let hi = weights.len().saturating_sub(1);
        // bisect_right over cumulative[0..hi]
        cumulative[..hi].partition_point(|&c| c <= target)
    }

    /// `random.sample(range(population), k)`, with CPython's choice between its pool and set
    /// algorithms. Writes the `k` distinct draws, in draw order, into `out`.
    pub fn sample_range(&mut self, population: u32, k: u32, out: &mut Vec<u32>) {
        out.clear();
        let mut setsize: u64 = 21;
        if k > 5 {
            // 4 ** ceil(log(3k, 4)), computed with integers to avoid float log.
            let target = 3 * u64::from(k);
            let mut power = 1u64;
            while power < target {
                power *= 4;
            }
            setsize += power;
        }
        if u64::from(population) <= setsize {
            let mut pool: Vec<u32> = (0..population).collect();
            for i in 0..k {
                let j = self.randbelow(population - i) as usize;
                out.push(pool[j]);
                pool[j] = pool[(population - i - 1) as usize];
            }
        } else {
            for _ in 0..k {
                let mut j = self.randbelow(population);
                while out.contains(&j) {
                    j = self.randbelow(population);
                }
                out.push(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PyRandom;

    // Expected values printed by CPython 3.11's `random` module.

    #[test]
    fn sample_uses_the_set_method_for_large_populations() {
        // random.Random(5).sample(range(1000), 30)
        let expected = [
            637, 261, 759, 367, 814, 707, 965, 861, 757, 667, 944, 542, 29, 860, 476, 794, 255,
            664, 53, 922, 160, 115, 380, 480, 889, 252, 389, 556, 104, 587,
        ];
        let mut out = Vec::new();
        PyRandom::new(5).sample_range(1000, 30, &mut out);
        assert_eq!(out, expected);
    }

    #[test]
    fn choices_uniform_getrandbits_and_randbelow_match_cpython() {
        // r = random.Random(2**40 + 3); three r.choices(range(4), weights=[.5, 1.5, .25, 3])
        // then r.uniform(-2, 5), r.getrandbits(7), r.randrange(1000)
        let mut rng = PyRandom::new((1 << 40) + 3);
        let weights = [0.5, 1.5, 0.25, 3.0];
        let picks: Vec<usize> = (0..3).map(|_| rng.choices_weighted(&weights)).collect();
        assert_eq!(picks, [1, 3, 0]);
        assert_eq!(rng.uniform(-2.0, 5.0), 4.869810693926977);
        assert_eq!(rng.getrandbits(7), 115);
        assert_eq!(rng.randbelow(1000), 714);
    }
}
