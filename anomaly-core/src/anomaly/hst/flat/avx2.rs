//! The flat walk of a dense row with AVX2 gathers: four trees per vector, a level at a time.
//!
//! The scalar walk spends some 30 instructions per visited node (two dependent loads, the
//! comparison, the mass update, the score's mask arithmetic, bounds checks); here gathers
//! fetch four trees' features, thresholds and the row's values, and the comparison, the next
//! node and the score's arithmetic run on four lanes. The branches' masses stay scalar (see
//! [`count_visits`]); the leaves' are gathered. Results are the scalar walk's exactly: the
//! same comparison (`x >= threshold`, ordered), the same integer sums.
//!
//! Every gathered index is clamped to its array, so a broken invariant can give a wrong
//! walk but never read or write outside the forest or the row.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m256i, _CMP_GE_OQ, _mm_add_epi32, _mm_cvtsi32_si128, _mm_i32gather_epi32,
    _mm_loadu_si128, _mm_min_epu32, _mm_set1_epi32, _mm_setr_epi32, _mm_setzero_si128,
    _mm_slli_epi32, _mm_srli_epi32, _mm_storeu_si128, _mm_sub_epi32, _mm256_add_epi64,
    _mm256_and_si256, _mm256_castpd_si256, _mm256_castsi256_si128, _mm256_cmp_pd,
    _mm256_cmpgt_epi64, _mm256_cvtepu32_epi64, _mm256_i32gather_pd, _mm256_permutevar8x32_epi32,
    _mm256_set1_epi64x, _mm256_setr_epi32, _mm256_setzero_si256, _mm256_sll_epi64,
    _mm256_storeu_si256,
};

use super::{Branch, FlatTrees, LANES, Masses};
use crate::anomaly::hst::forest::Walk;

/// Groups of [`LANES`] trees walked side by side: their gathers' latencies overlap.
const GROUPS_AT_ONCE: usize = 4;

/// Whether this CPU runs [`walk_all`].
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// [`FlatTrees::walk_all`] for a dense row `x` (`x.len()` columns, at least one).
///
/// # Safety
/// The CPU must support AVX2 ([`available`]); `x` and the forest must not be empty.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn walk_all(
    trees: &mut FlatTrees,
    x: &[f64],
    limit: u32,
    walks: &mut [Walk],
) -> u64 {
    debug_assert!(!x.is_empty() && !trees.branches.is_empty());
    // Slot indices, times four, fit the 32-bit lanes (`fits` keeps storage under 1 MiB).
    debug_assert!(trees.branches.len() < 1 << 29);
    let height = trees.height;
    let slots = 1usize << height;
    let stored_trees = trees.branches.len() >> height;
    let groups = stored_trees / LANES;
    let last_slot = (trees.branches.len() - 1) as i32;
    let last_feature = (x.len().max(1) - 1) as i32;
    let n_trees = (trees.n_trees as usize).min(walks.len());
    // Every access below goes through these pointers (no reference to the arrays is made
    // while they are in use), at indices clamped to `last_slot` / `last_feature`.
    let branches = trees.branches.as_mut_ptr();
    let leaves = trees.leaves.as_mut_ptr();
    let mut total = 0u64;
    // SAFETY: AVX2 is enabled for this function; every pointer offset is an index clamped
    // within its array (`branches` and `leaves` both hold `stored_trees << height` slots,
    // `x` holds `last_feature + 1` values), and the arrays outlive the loop.
    unsafe {
        let thresholds = branches.cast::<f64>().cast_const();
        // `Branch` is `repr(C)`: the threshold at byte 0, the feature at 8, the masses at 12;
        // in 4-byte units a slot's feature is at `4 * slot + 2`, its masses at `4 * slot + 3`.
        let words = branches.cast::<i32>().cast_const();
        let features = words.add(2);
        let max_slot = _mm_set1_epi32(last_slot);
        let max_feature = _mm_set1_epi32(last_feature);
        let one = _mm_set1_epi32(1);
        let limit_below = _mm256_set1_epi64x(i64::from(limit) - 1);
        let low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
        let mut first_group = 0;
        while first_group < groups {
            let count = GROUPS_AT_ONCE.min(groups - first_group);
            let mut base = [_mm_setzero_si128(); GROUPS_AT_ONCE];
            let mut node = [_mm_setzero_si128(); GROUPS_AT_ONCE];
            let mut score = [_mm256_setzero_si256(); GROUPS_AT_ONCE];
            let mut counting = [_mm256_set1_epi64x(-1); GROUPS_AT_ONCE];
            for (g, base) in base.iter_mut().enumerate().take(count) {
                let tree = ((first_group + g) * LANES) as i32;
                let slots = slots as i32;
                *base = _mm_setr_epi32(
                    tree * slots,
                    (tree + 1) * slots,
                    (tree + 2) * slots,
                    (tree + 3) * slots,
                );
            }
            for depth in 0..height {
                let shift = _mm_cvtsi32_si128(depth as i32);
                for g in 0..count {
                    let slot = _mm_min_epu32(_mm_add_epi32(base[g], node[g]), max_slot);
                    let slot_words = _mm_slli_epi32::<2>(slot);
                    let feature =
                        _mm_min_epu32(_mm_i32gather_epi32::<4>(features, slot_words), max_feature);
                    let threshold = _mm256_i32gather_pd::<8>(thresholds, _mm_slli_epi32::<1>(slot));
                    let value = _mm256_i32gather_pd::<8>(x.as_ptr(), feature);
                    let reference = count_visits(branches, slot);
                    let reference = _mm256_cvtepu32_epi64(reference);
                    let term = _mm256_sll_epi64(reference, shift);
                    score[g] = _mm256_add_epi64(score[g], _mm256_and_si256(term, counting[g]));
                    counting[g] = _mm256_cmpgt_epi64(reference, limit_below);
                    // All ones in each 64-bit lane that goes right; its low halves as 32 bits.
                    let right = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GE_OQ>(value, threshold));
                    let right =
                        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(right, low_dwords));
                    // 2 * node + 1 + right, with `right` as 0 or -1.
                    node[g] =
                        _mm_sub_epi32(_mm_add_epi32(_mm_slli_epi32::<1>(node[g]), one), right);
                }
            }
            let first_leaf = _mm_set1_epi32(slots as i32 - 1);
            let shift = _mm_cvtsi32_si128(height as i32);
            for g in 0..count {
                let leaf = _mm_sub_epi32(node[g], first_leaf);
                let slot = _mm_min_epu32(_mm_add_epi32(base[g], leaf), max_slot);
                let reference = _mm_srli_epi32::<16>(_mm_i32gather_epi32::<4>(
                    leaves.cast::<i32>().cast_const(),
                    slot,
                ));
                count_leaf_visits(leaves, slot);
                let reference = _mm256_cvtepu32_epi64(reference);
                let term = _mm256_sll_epi64(reference, shift);
                let score = _mm256_add_epi64(score[g], _mm256_and_si256(term, counting[g]));
                let mut scores = [0u64; LANES];
                let mut leaf_of = [0u32; LANES];
                _mm256_storeu_si256(scores.as_mut_ptr().cast::<__m256i>(), score);
                _mm_storeu_si128(leaf_of.as_mut_ptr().cast::<__m128i>(), leaf);
                let first_tree = (first_group + g) * LANES;
                for lane in 0..LANES {
                    let tree = first_tree + lane;
                    if tree < n_trees {
                        walks[tree] = Walk::finished(scores[lane], leaf_of[lane]);
                        total += scores[lane];
                    }
                }
            }
            first_group += count;
        }
    }
    total
}

/// Counts a visit in the latest mass of the branches at `slots` (four indices, each within
/// the array `branches` points to); returns their reference masses. Scalar loads and stores:
/// the next event's reads of the same nodes (the root's, always) then forward from these
/// stores, where a gather would wait for them to reach the cache.
#[inline(always)]
unsafe fn count_visits(branches: *mut Branch, slots: __m128i) -> __m128i {
    let mut at = [0u32; LANES];
    let mut reference = [0u32; LANES];
    // SAFETY: the caller's indices are within the array; no reference to it exists now.
    unsafe {
        _mm_storeu_si128(at.as_mut_ptr().cast::<__m128i>(), slots);
        for (slot, reference) in at.into_iter().zip(&mut reference) {
            let masses = &mut (*branches.add(slot as usize)).masses;
            *reference = masses.visit();
        }
        _mm_loadu_si128(reference.as_ptr().cast::<__m128i>())
    }
}

/// [`count_visits`] for leaves.
#[inline(always)]
unsafe fn count_leaf_visits(leaves: *mut Masses, slots: __m128i) {
    let mut at = [0u32; LANES];
    // SAFETY: as in `count_visits`.
    unsafe {
        _mm_storeu_si128(at.as_mut_ptr().cast::<__m128i>(), slots);
        for slot in at {
            (*leaves.add(slot as usize)).visit();
        }
    }
}
