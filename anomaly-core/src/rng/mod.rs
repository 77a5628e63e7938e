//! Random number generators.
//!
//! [`PyRandom`] reproduces CPython's `random.Random(seed)` bit for bit, which is what River uses
//! to draw KSWIN samples and to build HalfSpaceTrees. Anything that does not need River
//! compatibility uses `rand_chacha` instead.

mod python;

pub use python::PyRandom;
