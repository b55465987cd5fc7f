//! Step-size checks of MODEL.md section 7, reported as warnings (a network outside the bounds
//! still runs; the user should know that its forward pass may grow or its gradients explode).
use crate::config::{Integrator, ModelConfig};
use crate::linalg::spectral_norm;
use crate::params::Params;
use crate::real::Real;

/// Warnings for a configuration and its current parameters; empty when all bounds hold.
pub fn warnings<T: Real>(cfg: &ModelConfig, p: &Params<T>) -> Vec<String> {
    let (w, h) = (cfg.width, cfg.h());
    let mut out = Vec::new();
    let kj = |j: usize| p.k_step(j).iter().map(|v| v.f64()).collect::<Vec<f64>>();
    match cfg.integrator {
        Integrator::Hamiltonian | Integrator::Leapfrog => {
            // Verlet/leapfrog on the linearised system: h s_max(K_j) < 2 (for leapfrog this
            // also gives h^2 lambda_max(K^T D K) <= 4, since 0 <= sigma' <= 1).
            let (j, s) = (0..cfg.steps)
                .map(|j| (j, spectral_norm(&kj(j), w, w)))
                .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            if h * s >= 2.0 {
                out.push(format!(
                    "{}: h * s_max(K_{j}) = {:.3} >= 2 (h = {h:.4}, s_max = {s:.3}); the step is \
                     outside the stable region of MODEL.md section 7. Use more steps or a smaller T.",
                    cfg.integrator,
                    h * s
                ));
            }
        }
        Integrator::Antisym => {
            if cfg.gamma == 0.0 {
                out.push(
                    "antisym with gamma = 0: forward Euler on a purely imaginary spectrum grows \
                     like sqrt(1 + h^2 mu^2) per step (MODEL.md section 7); set gamma > 0"
                        .into(),
                );
            } else {
                // Eigenvalues of A_j are -gamma/2 + i lambda with |lambda| <= s_max(K - K^T)/2;
                // Euler is stable when (1 - h gamma/2)^2 + h^2 lambda^2 <= 1.
                let worst = (0..cfg.steps)
                    .map(|j| {
                        let k = kj(j);
                        let skew: Vec<f64> = (0..w * w)
                            .map(|i| 0.5 * (k[i] - k[(i % w) * w + i / w]))
                            .collect();
                        let lam = spectral_norm(&skew, w, w);
                        (1.0 - 0.5 * h * cfg.gamma).powi(2) + (h * lam).powi(2)
                    })
                    .fold(0.0, f64::max);
                if worst > 1.0 + 1e-12 {
                    out.push(format!(
                        "antisym: the forward Euler amplification bound is {:.4} > 1 per step \
                         (h = {h:.4}, gamma = {}); features may grow with depth. Use more steps \
                         or a larger gamma.",
                        worst.sqrt(),
                        cfg.gamma
                    ));
                }
            }
        }
        Integrator::Resnet => {}
    }
    out
}
