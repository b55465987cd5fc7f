//! Shared helpers for the core's integration tests.
#![allow(dead_code)]
use stablenet_core::compare;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, Real, Rng};

pub fn config(integrator: Integrator, d: usize, w: usize, n: usize, c: usize) -> ModelConfig {
    ModelConfig {
        d,
        width: w,
        steps: n,
        final_time: 1.7,
        integrator,
        activation: Activation::Tanh,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: c,
    }
}

/// Parameters with every entry random (biases too, so every gradient is non-trivial).
pub fn random_params<T: Real>(cfg: &ModelConfig, seed: u64, scale: f64) -> Params<T> {
    let mut p = Params::<T>::zeros(cfg);
    let mut rng = Rng::new(seed);
    for (_, v) in p.groups_mut() {
        for x in v.iter_mut() {
            *x = T::c(scale * rng.normal());
        }
    }
    p
}

pub fn random_vec<T: Real>(len: usize, rng: &mut Rng) -> Vec<T> {
    (0..len).map(|_| T::c(rng.normal())).collect()
}

pub fn random_batch(cfg: &ModelConfig, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let x = (0..n * cfg.d).map(|_| rng.normal() as f32).collect();
    let labels = (0..n).map(|_| rng.below(cfg.classes) as u32).collect();
    (x, labels)
}

/// NaN-aware (stablenet_core::compare): a non-finite entry or a length mismatch is infinite.
pub fn max_abs_diff<T: Real>(a: &[T], b: &[T]) -> f64 {
    compare::max_abs_diff(a, b)
}

/// NaN-aware: a non-finite entry makes it infinite.
pub fn max_abs<T: Real>(a: &[T]) -> f64 {
    compare::max_abs(a)
}
