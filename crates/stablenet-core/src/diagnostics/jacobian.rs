//! Jacobians of the continuous right-hand sides behind the steps of MODEL.md section 2, at a
//! state: the linearisations that the stability facts of section 7 speak about. Row-major.
//!
//! | integrator | ODE | Jacobian |
//! |---|---|---|
//! | resnet, antisym | y' = σ(M y + b) | J = diag(σ'(M y + b)) M, M = K or A = (K - Kᵀ - γI)/2 |
//! | hamiltonian | y' = σ(K z + b), z' = -σ(Kᵀ y + b) | J = [[0, D K], [-D' Kᵀ, 0]] on (y, z) |
//! | leapfrog | y'' = F(y) = -Kᵀ σ(K y + b) | J = ∂F/∂y = -Kᵀ D K |
//!
//! with D = diag σ'(K z + b), D' = diag σ'(Kᵀ y + b) for hamiltonian and D = diag σ'(K y + b)
//! for leapfrog. The hamiltonian system is the one whose Verlet discretisation is section 2's
//! step (z -= h σ(Kᵀ y + b), then y += h σ(K z + b)); its eigenvalues are ±i sqrt(μ) with μ
//! the eigenvalues of D K D' Kᵀ, which are real and >= 0 (D, D' >= 0), so they are purely
//! imaginary. The leapfrog Jacobian is symmetric negative semidefinite (section 2 notes).
use crate::config::{Activation, Integrator};
use crate::integrators::Step;
use crate::linalg::{matvec, matvec_t};
use crate::real::Real;

/// diag(σ'(u)) as a vector, u = M x + b (or Mᵀ x + b when `transpose`).
fn slopes<T: Real>(m: &[T], x: &[T], b: &[T], act: Activation, transpose: bool) -> Vec<T> {
    let mut u = vec![T::zero(); b.len()];
    if transpose {
        matvec_t(m, x, &mut u);
    } else {
        matvec(m, x, &mut u);
    }
    u.iter().zip(b).map(|(ui, bi)| act.df(*ui + *bi)).collect()
}

/// resnet/antisym: J = diag(σ'(M y + b)) M, w x w; `st.k` is the operator M that acts.
pub fn euler<T: Real>(st: &Step<T>, y: &[T]) -> Vec<T> {
    let w = st.width();
    let d = slopes(st.k, y, st.b, st.act, false);
    let mut j = st.k.to_vec();
    for (row, di) in j.chunks_exact_mut(w).zip(&d) {
        row.iter_mut().for_each(|v| *v *= *di);
    }
    j
}

/// hamiltonian: the 2w x 2w matrix [[0, D K], [-D' Kᵀ, 0]] on the state (y, z).
pub fn hamiltonian<T: Real>(st: &Step<T>, y: &[T], z: &[T]) -> Vec<T> {
    let w = st.width();
    let d = slopes(st.k, z, st.b, st.act, false);
    let dp = slopes(st.k, y, st.b, st.act, true);
    let n = 2 * w;
    let mut j = vec![T::zero(); n * n];
    for r in 0..w {
        for c in 0..w {
            j[r * n + w + c] = d[r] * st.k[r * w + c]; // (D K)_{rc}
            j[(w + r) * n + c] = -dp[r] * st.k[c * w + r]; // -(D' Kᵀ)_{rc}
        }
    }
    j
}

/// leapfrog: -Kᵀ D K, w x w, symmetric negative semidefinite.
pub fn leapfrog<T: Real>(st: &Step<T>, y: &[T]) -> Vec<T> {
    let w = st.width();
    let d = slopes(st.k, y, st.b, st.act, false);
    let mut j = vec![T::zero(); w * w];
    for r in 0..w {
        for c in 0..w {
            let s: T = d.iter().enumerate().map(|(k, dk)| st.k[k * w + r] * *dk * st.k[k * w + c]).sum();
            j[r * w + c] = -s;
        }
    }
    j
}

/// The Jacobian of step j's right-hand side and its order (w, or 2w for hamiltonian). `st` is
/// the network's step j (the operator M_j for resnet/antisym); z is read by hamiltonian only.
pub fn rhs<T: Real>(integrator: Integrator, st: &Step<T>, y: &[T], z: &[T]) -> (Vec<T>, usize) {
    let w = st.width();
    match integrator {
        Integrator::Resnet | Integrator::Antisym => (euler(st, y), w),
        Integrator::Hamiltonian => (hamiltonian(st, y, z), 2 * w),
        Integrator::Leapfrog => (leapfrog(st, y), w),
    }
}
