//! Step-size checks of MODEL.md section 7, reported as warnings (a network outside the bounds
//! still runs; the user should know that its forward pass may grow or its gradients explode).
use crate::config::{Integrator, ModelConfig};
use crate::linalg::spectral_norm;
use crate::params::Params;
use crate::real::Real;

/// Warnings for a configuration and its current parameters; empty when all bounds hold. A
/// configuration or parameters that are not a valid model get that as their one warning.
pub fn warnings<T: Real>(cfg: &ModelConfig, p: &Params<T>) -> Vec<String> {
    if let Err(e) = cfg.validate().and_then(|_| p.check_shape(cfg)) {
        return vec![format!("no step-size check: {e}")];
    }
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
                        let skew: Vec<f64> = (0..w * w).map(|i| 0.5 * (k[i] - k[(i % w) * w + i / w])).collect();
                        let lam = spectral_norm(&skew, w, w);
                        (1.0 - 0.5 * h * cfg.gamma).powi(2) + (h * lam).powi(2)
                    })
                    .fold(0.0, f64::max);
                if worst > 1.0 + 1e-12 {
                    // The bound compounds over the N steps: say by how much, since a mild
                    // excess (the defaults' small gamma) differs from a blow-up.
                    let growth = worst.sqrt().powf(cfg.steps as f64);
                    out.push(format!(
                        "antisym: the forward Euler amplification bound is {:.4} > 1 per step \
                         (h = {h:.4}, gamma = {}), at most {growth:.3e} over the {} steps; features \
                         may grow with depth. Use more steps or a larger gamma.",
                        worst.sqrt(),
                        cfg.gamma,
                        cfg.steps
                    ));
                }
            }
        }
        Integrator::Resnet => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;

    fn cfg(integrator: Integrator, steps: usize, gamma: f64) -> ModelConfig {
        ModelConfig {
            d: 2,
            width: 4,
            steps,
            final_time: 1.0,
            integrator,
            activation: Activation::Tanh,
            gamma,
            classes: 2,
        }
    }

    /// K_j = s * I has s_max = s, so h s_max = s / N.
    fn scaled_identity(c: &ModelConfig, s: f32) -> Params<f32> {
        let mut p = Params::zeros(c);
        for j in 0..c.steps {
            for i in 0..c.width {
                p.k[j * 16 + i * 5] = s;
            }
        }
        p
    }

    #[test]
    fn verlet_and_leapfrog_bound_is_h_times_smax_below_two() {
        for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog] {
            let c = cfg(integrator, 4, 0.0); // h = 0.25
            assert!(warnings(&c, &scaled_identity(&c, 7.9)).is_empty(), "h s = 1.975 is stable");
            let w = warnings(&c, &scaled_identity(&c, 8.1));
            assert_eq!(w.len(), 1, "h s = 2.025 breaks the bound");
            assert!(w[0].contains("h * s_max(K_0) = 2.025"), "{}", w[0]);
        }
    }

    #[test]
    fn antisym_needs_damping_or_small_steps() {
        let c = cfg(Integrator::Antisym, 4, 0.0);
        assert!(warnings(&c, &Params::<f32>::zeros(&c))[0].contains("gamma = 0"));
        // Damped, no skew part: stable.
        let c = cfg(Integrator::Antisym, 4, 0.1);
        assert!(warnings(&c, &scaled_identity(&c, 3.0)).is_empty());
        // A strong rotation with little damping grows.
        let mut p = Params::<f32>::zeros(&c);
        for j in 0..4 {
            p.k[j * 16 + 1] = 4.0; // K - K^T has +-4 at (0, 1), (1, 0)
        }
        assert!(warnings(&c, &p)[0].contains("amplification"));
    }
}
