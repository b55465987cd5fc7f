//! The four integrators of MODEL.md section 2, one step at a time, for one example (a column
//! vector of width w). Each file holds a step's forward map, its adjoint (MODEL.md section 4),
//! its reverse-time reconstruction where one exists (section 3), and its tangent-linear map
//! (the forward derivative, used by the adjoint dot-product tests and sensitivity diagnostics).
//!
//! These are the CPU twins of the WGSL step kernels.
// Index loops mirror the formulas of MODEL.md (several vectors per index); keep them.
#![allow(clippy::needless_range_loop)]
use crate::config::Activation;
use crate::real::Real;

pub mod leapfrog;
pub mod resnet;
pub mod verlet;

/// The parameters of one step j: K_j (w x w, row-major; for resnet/antisym the operator
/// M_j that acts, see [`resnet::operator`]), b_j, the step size h and sigma.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a, T> {
    pub k: &'a [T],
    pub b: &'a [T],
    pub h: T,
    pub act: Activation,
}

impl<'a, T: Real> Step<'a, T> {
    pub fn new(k: &'a [T], b: &'a [T], h: T, act: Activation) -> Self {
        debug_assert_eq!(k.len(), b.len() * b.len());
        Step { k, b, h, act }
    }

    pub fn width(&self) -> usize {
        self.b.len()
    }
}

/// Per-step work buffers of width w, allocated once per pass (not per step).
#[derive(Clone, Debug)]
pub struct Scratch<T> {
    pub u: Vec<T>,
    pub s: Vec<T>,
    pub t: Vec<T>,
    pub v: Vec<T>,
}

impl<T: Real> Scratch<T> {
    pub fn new(w: usize) -> Self {
        Scratch { u: vec![T::zero(); w], s: vec![T::zero(); w], t: vec![T::zero(); w], v: vec![T::zero(); w] }
    }
}

/// u = M x + b
#[inline]
pub(crate) fn affine<T: Real>(m: &[T], x: &[T], b: &[T], u: &mut [T]) {
    crate::linalg::matvec(m, x, u);
    u.iter_mut().zip(b).for_each(|(ui, bi)| *ui += *bi);
}

/// u = M^T x + b
#[inline]
pub(crate) fn affine_t<T: Real>(m: &[T], x: &[T], b: &[T], u: &mut [T]) {
    crate::linalg::matvec_t(m, x, u);
    u.iter_mut().zip(b).for_each(|(ui, bi)| *ui += *bi);
}
