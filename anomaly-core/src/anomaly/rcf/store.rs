//! The points the trees hold, stored once for the whole forest and counted by reference.

use serde::{Deserialize, Serialize};

/// Points of `dim` values each, in one flat array; a point lives while a tree's sampler holds
/// it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct PointStore {
    dim: usize,
    values: Vec<f32>,
    references: Vec<u32>,
    /// Slots whose point nobody holds, reused first.
    free: Vec<u32>,
}

impl PointStore {
    pub(super) fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    /// Stores `point`, held by nobody yet.
    pub(super) fn add(&mut self, point: &[f32]) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                let at = slot as usize * self.dim;
                self.values[at..at + self.dim].copy_from_slice(point);
                slot
            }
            None => {
                self.values.extend_from_slice(point);
                self.references.push(0);
                (self.references.len() - 1) as u32
            }
        }
    }

    pub(super) fn get(&self, index: u32) -> &[f32] {
        let at = index as usize * self.dim;
        &self.values[at..at + self.dim]
    }

    pub(super) fn retain(&mut self, index: u32) {
        self.references[index as usize] += 1;
    }

    /// Drops one reference; the slot is freed with the last one.
    pub(super) fn release(&mut self, index: u32) {
        let count = &mut self.references[index as usize];
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.free.push(index);
        }
    }

    /// Frees `index` if nobody took it.
    pub(super) fn release_if_unheld(&mut self, index: u32) {
        if self.references[index as usize] == 0 {
            self.free.push(index);
        }
    }

    /// Points alive (held by some tree).
    pub(super) fn live(&self) -> usize {
        self.references.iter().filter(|&&r| r > 0).count()
    }

    pub(super) fn slots(&self) -> usize {
        self.references.len()
    }

    /// Checks a loaded store against the reference counts the samplers imply.
    pub(super) fn consistent_with(&self, counts: &[u32]) -> bool {
        let n = self.references.len();
        let mut free: Vec<u32> = self.free.clone();
        free.sort_unstable();
        let free_ok = free.windows(2).all(|w| w[0] < w[1])
            && free
                .iter()
                .all(|&f| (f as usize) < n && self.references[f as usize] == 0);
        let unheld = self.references.iter().filter(|&&r| r == 0).count();
        self.dim > 0
            && self.values.len() == n * self.dim
            && self.values.iter().all(|v| v.is_finite())
            && counts.len() == n
            && counts == self.references.as_slice()
            && free_ok
            && unheld == free.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.values.capacity() * 4 + self.references.capacity() * 4 + self.free.capacity() * 4
    }
}
