//! Forward sensitivity and per-layer gradient norms: exploding or vanishing made visible.
use super::{opening, walk};
use crate::config::{Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::integrators::{Scratch, Step, leapfrog, resnet, verlet};
use crate::network::Network;
use crate::params::Params;
use crate::real::Real;

/// dy_N/dy_0 of the dynamic part (the N steps) at the opening state y_0: w x w row-major,
/// entry (r, i) = ∂y_N[r]/∂y_0[i]. Column i is the tangent-linear image of the unit vector
/// e_i (the integrators' `tangent_step` with dK = 0, db = 0). For hamiltonian z_0 = 0 is held
/// fixed; for leapfrog y_{-1} = y_0 moves with y_0.
pub fn flow_jacobian<T: Real>(net: &Network<T>, y0: &[T]) -> Vec<T> {
    let (w, integrator) = (y0.len(), net.cfg.integrator);
    let (zk, zb) = (vec![T::zero(); w * w], vec![T::zero(); w]);
    // dy[i], dz[i]: the tangent of e_i (dz is dy_{j-1} for leapfrog, the momentum's tangent
    // for hamiltonian).
    let mut dy: Vec<Vec<T>> = (0..w).map(|i| unit(w, i)).collect();
    let mut dz: Vec<Vec<T>> =
        (0..w).map(|i| if integrator == Integrator::Leapfrog { unit(w, i) } else { vec![T::zero(); w] }).collect();
    let mut sc = Scratch::new(w);
    walk(net, y0, |_, st, y, z| {
        let dst = Step::new(&zk, &zb, st.h, st.act);
        for (a, b) in dy.iter_mut().zip(dz.iter_mut()) {
            match integrator {
                Integrator::Resnet | Integrator::Antisym => resnet::tangent_step(st, &dst, y, a, &mut sc),
                Integrator::Hamiltonian => verlet::tangent_step(st, &dst, y, z, a, b, &mut sc),
                Integrator::Leapfrog => leapfrog::tangent_step(st, &dst, y, b, a, &mut sc),
            }
        }
    });
    let mut jac = vec![T::zero(); w * w];
    for (i, col) in dy.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            jac[r * w + i] = *v;
        }
    }
    jac
}

fn unit<T: Real>(w: usize, i: usize) -> Vec<T> {
    let mut e = vec![T::zero(); w];
    e[i] = T::one();
    e
}

/// Forward sensitivity over a set of inputs (n x d row-major).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sensitivity {
    /// Mean over the examples of s_max(dy_N/dy_0).
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Mean over the examples of the smallest singular value (vanishing directions).
    pub mean_smallest: f64,
}

/// s_max(dy_N/dy_0) averaged over the examples of `x` (each linearised at its own y_0).
pub fn sensitivity<T: Real>(cfg: &ModelConfig, p: &Params<T>, x: &[f32]) -> Result<Sensitivity> {
    let net = Network::new(cfg, p)?;
    if x.is_empty() || !x.len().is_multiple_of(cfg.d) {
        return Err(Error::Shape(format!("x holds {} values: not a non-empty multiple of d = {}", x.len(), cfg.d)));
    }
    let w = cfg.width;
    let (mut sum, mut sum_small, mut min, mut max) = (0.0, 0.0, f64::INFINITY, 0.0f64);
    let n = x.len() / cfg.d;
    for xi in x.chunks_exact(cfg.d) {
        let y0 = opening(&net, xi);
        let jac: Vec<f64> = flow_jacobian(&net, &y0).iter().map(|v| v.f64()).collect();
        let (big, small) = if jac.iter().all(|v| v.is_finite()) {
            let sv = super::eig::singular_values(&jac, w, w)?;
            (sv[0], sv[w - 1])
        } else {
            (f64::INFINITY, f64::NAN)
        };
        sum += big;
        sum_small += small;
        min = min.min(big);
        max = max.max(big);
    }
    Ok(Sensitivity { mean: sum / n as f64, min, max, mean_smallest: sum_small / n as f64 })
}

/// |dJ/dK_j|_F for every step j of a gradient.
pub fn layer_grad_norms<T: Real>(g: &Params<T>) -> Vec<f64> {
    (0..g.n).map(|j| g.k_step(j).iter().map(|v| v.f64() * v.f64()).sum::<f64>().sqrt()).collect()
}

/// Summary of per-layer gradient norms.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct GradStats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// |dJ/dK_0| / |dJ/dK_{N-1}|: >> 1 gradients explode towards the input, << 1 they vanish.
    pub first_over_last: f64,
    /// |dJ/dK_0| / median_j |dJ/dK_j|: insensitive to a last layer that acts through fewer
    /// steps (leapfrog's last K acts on y_N through h² only).
    pub first_over_median: f64,
}

impl GradStats {
    pub fn of(norms: &[f64]) -> Self {
        if norms.is_empty() {
            let nan = f64::NAN;
            return GradStats { min: nan, median: nan, max: nan, first_over_last: nan, first_over_median: nan };
        }
        let mut s = norms.to_vec();
        s.sort_by(f64::total_cmp);
        let m = s.len();
        let median = if m % 2 == 1 { s[m / 2] } else { 0.5 * (s[m / 2 - 1] + s[m / 2]) };
        GradStats {
            min: s[0],
            median,
            max: s[m - 1],
            first_over_last: norms[0] / norms[m - 1],
            first_over_median: norms[0] / median,
        }
    }
}
