//! Stability diagnostics (MODEL.md section 7): what the paper claims, made measurable.
//!
//! - [`inspect`]: per step j, the spectrum of the Jacobian of the continuous right-hand side
//!   ([`jacobian`]) at a representative state, s_max(K_j), and the section 7 step-size
//!   conditions of the integrator.
//! - [`sensitivity`]: the forward sensitivity |dy_N/dy_0| of the whole dynamic part, from the
//!   tangent-linear steps, and the per-layer gradient norms |dJ/dK_j| of a batch.
//!
//! Numbers are computed in the network's `Real` and reported in f64; eigen- and singular
//! values go through nalgebra ([`eig`]).
use crate::config::Integrator;
use crate::integrators::{Scratch, Step, leapfrog, resnet, verlet};
use crate::network::Network;
use crate::params::Params;
use crate::real::Real;

pub mod eig;
pub mod inspect;
pub mod jacobian;
pub mod sensitivity;

pub use inspect::{Inspection, LinState, Linearisation, StepDiagnostic, inspect, mean_states};
pub use sensitivity::{GradStats, flow_jacobian, layer_grad_norms, sensitivity};

/// y_0 = σ(K_in x + b_in) of one example (MODEL.md section 1).
pub fn opening<T: Real>(net: &Network<T>, x: &[f32]) -> Vec<T> {
    let p: &Params<T> = net.p;
    let xi: Vec<T> = x.iter().map(|v| T::c(*v as f64)).collect();
    let mut y = vec![T::zero(); p.w];
    crate::linalg::matvec(&p.k_in, &xi, &mut y);
    y.iter_mut().zip(&p.b_in).for_each(|(yi, bi)| *yi = net.cfg.activation.f(*yi + *bi));
    y
}

/// Runs the N steps from y_0 and calls `visit(j, step_j, y_j, z_j)` with the state before each
/// step (z_j is the momentum for hamiltonian, y_{j-1} for leapfrog, unused otherwise). Returns
/// y_N.
pub fn walk<T: Real>(net: &Network<T>, y0: &[T], mut visit: impl FnMut(usize, &Step<T>, &[T], &[T])) -> Vec<T> {
    let (cfg, w) = (net.cfg, y0.len());
    let mut y = y0.to_vec();
    // y_{-1} = y_0 for leapfrog, z_0 = 0 for hamiltonian (section 2).
    let mut z = if cfg.integrator == Integrator::Leapfrog { y0.to_vec() } else { vec![T::zero(); w] };
    let mut sc = Scratch::new(w);
    for j in 0..cfg.steps {
        let st = net.step(j);
        visit(j, &st, &y, &z);
        match cfg.integrator {
            Integrator::Resnet | Integrator::Antisym => resnet::forward_step(&st, &mut y, &mut sc),
            Integrator::Hamiltonian => verlet::forward_step(&st, &mut y, &mut z, &mut sc),
            Integrator::Leapfrog => leapfrog::forward_step(&st, &mut z, &mut y, &mut sc),
        }
    }
    y
}
