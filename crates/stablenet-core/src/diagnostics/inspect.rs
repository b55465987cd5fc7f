//! Per-step stability report of a network (MODEL.md section 7).
use super::eig::{self, Eig};
use super::{jacobian, opening, walk};
use crate::config::{Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::params::Params;
use crate::real::Real;

/// Where the step Jacobians are linearised.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Linearisation {
    /// y = 0 (and z = 0 for hamiltonian) at every step: J_j depends on b_j only through σ'(b_j).
    Zero,
    /// At step j, the mean over `examples` inputs of the state before step j (y_j, and z_j for
    /// hamiltonian), from a forward pass.
    MeanState { examples: usize },
}

impl std::fmt::Display for Linearisation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Linearisation::Zero => f.write_str("y = 0 (z = 0) at every step"),
            Linearisation::MeanState { examples } => {
                write!(f, "the mean state before each step over {examples} examples")
            }
        }
    }
}

/// The diagnostics of one step j.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepDiagnostic {
    pub step: usize,
    /// max Re λ(J_j) and max |Im λ(J_j)| over the eigenvalues of the right-hand side's Jacobian.
    pub max_re: f64,
    pub max_abs_im: f64,
    /// Largest singular value of the parameter K_j, and h times it.
    pub s_max: f64,
    pub h_s_max: f64,
    /// The integrator's own quantity (see [`Inspection::criterion`]).
    pub criterion: f64,
    pub stable: bool,
}

/// The per-step report of a network.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Inspection {
    pub integrator: Integrator,
    pub width: usize,
    pub steps: usize,
    pub final_time: f64,
    pub h: f64,
    pub gamma: f64,
    pub linearised_at: Linearisation,
    /// The Jacobian whose eigenvalues are reported.
    pub jacobian: &'static str,
    /// Name of [`StepDiagnostic::criterion`].
    pub criterion: &'static str,
    /// The stability condition each step is checked against.
    pub condition: &'static str,
    pub per_step: Vec<StepDiagnostic>,
    pub stable_steps: usize,
    /// The step with the largest criterion value.
    pub worst_step: usize,
    pub summary: String,
}

/// max Re λ(J) must be <= TOL_RE (1 + |J|_F): eigenvalues that are 0 in exact arithmetic come
/// back as O(sqrt(eps) |J|) when they sit in a Jordan block.
const TOL_RE: f64 = 1e-6;
/// Slack on the "<= 1" and "<= 4" bounds for round-off.
const TOL_BOUND: f64 = 1e-12;

/// A linearisation point: y, and z (the momentum for hamiltonian, y_{j-1} for leapfrog).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinState {
    pub y: Vec<f64>,
    pub z: Vec<f64>,
}

/// The state before every step averaged over the examples of `x` (n x d row-major): (y_j, z_j)
/// for j = 0..N, z the momentum (hamiltonian) or y_{j-1} (leapfrog).
pub fn mean_states<T: Real>(cfg: &ModelConfig, p: &Params<T>, x: &[f32]) -> Result<Vec<LinState>> {
    let net = Network::new(cfg, p)?;
    if x.is_empty() || !x.len().is_multiple_of(cfg.d) {
        return Err(Error::Shape(format!("x holds {} values: not a non-empty multiple of d = {}", x.len(), cfg.d)));
    }
    let w = cfg.width;
    let mut acc = vec![LinState { y: vec![0.0; w], z: vec![0.0; w] }; cfg.steps];
    let n = x.len() / cfg.d;
    for xi in x.chunks_exact(cfg.d) {
        let y0 = opening(&net, xi);
        walk(&net, &y0, |j, _, y, z| {
            let LinState { y: ay, z: az } = &mut acc[j];
            ay.iter_mut().zip(y).for_each(|(a, v)| *a += v.f64());
            az.iter_mut().zip(z).for_each(|(a, v)| *a += v.f64());
        });
    }
    for s in acc.iter_mut() {
        s.y.iter_mut().chain(s.z.iter_mut()).for_each(|a| *a /= n as f64);
    }
    Ok(acc)
}

/// Per-step diagnostics. `states`, when given, holds the linearisation point (y_j, z_j) of
/// every step (from [`mean_states`]); otherwise every step is linearised at y = z = 0.
pub fn inspect<T: Real>(
    cfg: &ModelConfig,
    p: &Params<T>,
    states: Option<(&[LinState], Linearisation)>,
) -> Result<Inspection> {
    let net = Network::new(cfg, p)?;
    let (w, h) = (cfg.width, cfg.h());
    let zero = vec![T::zero(); w];
    let to_t = |v: &[f64]| v.iter().map(|x| T::c(*x)).collect::<Vec<T>>();
    if let Some((s, _)) = &states
        && s.len() != cfg.steps
    {
        return Err(Error::Shape(format!("{} linearisation states for {} steps", s.len(), cfg.steps)));
    }
    let mut per_step = Vec::with_capacity(cfg.steps);
    for j in 0..cfg.steps {
        let st = net.step(j);
        let (y, z) = match &states {
            Some((s, _)) => (to_t(&s[j].y), to_t(&s[j].z)),
            None => (zero.clone(), zero.clone()),
        };
        let (jac, n) = jacobian::rhs(cfg.integrator, &st, &y, &z);
        let jac: Vec<f64> = jac.iter().map(|v| v.f64()).collect();
        let kj: Vec<f64> = p.k_step(j).iter().map(|v| v.f64()).collect();
        let s_max = eig::spectral_norm(&kj, w, w)?;
        let eigs: Vec<Eig> = if cfg.integrator == Integrator::Leapfrog {
            eig::symmetric_eigenvalues(&jac, n)?.into_iter().map(|re| Eig { re, im: 0.0 }).collect()
        } else {
            eig::eigenvalues(&jac, n)?
        };
        let max_re = eigs.iter().map(|e| e.re).fold(f64::NEG_INFINITY, f64::max);
        let max_abs_im = eigs.iter().map(|e| e.im.abs()).fold(0.0, f64::max);
        let norm_j = jac.iter().map(|v| v * v).sum::<f64>().sqrt();
        let re_ok = max_re <= TOL_RE * (1.0 + norm_j);
        let (criterion, stable) = match cfg.integrator {
            // The linearised Euler step I + h J: spectral radius max |1 + h λ| <= 1.
            Integrator::Resnet => {
                let amp =
                    eigs.iter().map(|e| ((1.0 + h * e.re).powi(2) + (h * e.im).powi(2)).sqrt()).fold(0.0, f64::max);
                (amp, re_ok && amp <= 1.0 + TOL_BOUND)
            }
            // A = skew(K) - γ/2 I has eigenvalues -γ/2 + i μ with |μ| <= λ = s_max(skew(K)).
            Integrator::Antisym => {
                let skew: Vec<f64> = (0..w * w).map(|i| 0.5 * (kj[i] - kj[(i % w) * w + i / w])).collect();
                let lam = eig::spectral_norm(&skew, w, w)?;
                let q = (1.0 - 0.5 * h * cfg.gamma).powi(2) + (h * lam).powi(2);
                (q, q <= 1.0 + TOL_BOUND)
            }
            Integrator::Hamiltonian => (h * s_max, h * s_max < 2.0),
            // λ_max(Kᵀ D K) = -λ_min(J). The linearised y'' = -Kᵀ D K y under leapfrog is
            // stable iff h²λ_max <= 4 (MODEL.md section 7). h s_max < 2 implies it (0 <= σ' <= 1)
            // and is reported beside it, but does not decide: saturated units (small σ') allow
            // larger K.
            Integrator::Leapfrog => {
                let lam = -eigs.iter().map(|e| e.re).fold(f64::INFINITY, f64::min);
                let c = h * h * lam.max(0.0);
                (c, c <= 4.0 + TOL_BOUND)
            }
        };
        per_step.push(StepDiagnostic { step: j, max_re, max_abs_im, s_max, h_s_max: h * s_max, criterion, stable });
    }
    let (jacobian, criterion, condition) = describe(cfg.integrator);
    let stable_steps = per_step.iter().filter(|s| s.stable).count();
    let worst = per_step.iter().max_by(|a, b| a.criterion.total_cmp(&b.criterion)).expect("N >= 1");
    let max_re = per_step.iter().map(|s| s.max_re).fold(f64::NEG_INFINITY, f64::max);
    let worst_text = if cfg.integrator == Integrator::Hamiltonian {
        format!("h s_max = {:.4}", worst.h_s_max)
    } else {
        format!("{criterion} = {:.4}, h s_max = {:.4}", worst.criterion, worst.h_s_max)
    };
    let summary = format!(
        "{}: {stable_steps}/{} steps satisfy {condition} (h = {h:.4}); worst step {}: {worst_text}; \
         max Re λ(J) over all steps = {max_re:.3e}. {}",
        cfg.integrator,
        cfg.steps,
        worst.step,
        if stable_steps == cfg.steps { "STABLE" } else { "UNSTABLE" }
    );
    Ok(Inspection {
        integrator: cfg.integrator,
        width: w,
        steps: cfg.steps,
        final_time: cfg.final_time,
        h,
        gamma: cfg.gamma,
        linearised_at: states.map(|(_, l)| l).unwrap_or(Linearisation::Zero),
        jacobian,
        criterion,
        condition,
        worst_step: worst.step,
        per_step,
        stable_steps,
        summary,
    })
}

/// (Jacobian, criterion name, condition) per integrator.
fn describe(i: Integrator) -> (&'static str, &'static str, &'static str) {
    match i {
        Integrator::Resnet => {
            ("diag(σ'(K y + b)) K", "max|1+hλ|", "max Re λ(J) <= 0 and max|1 + hλ(J)| <= 1 (linearised Euler step)")
        }
        Integrator::Antisym => (
            "diag(σ'(A y + b)) A, A = (K - Kᵀ - γI)/2",
            "(1-hγ/2)²+h²λ²",
            "(1 - hγ/2)² + h²λ² <= 1, λ = s_max((K - Kᵀ)/2) (Euler amplification)",
        ),
        Integrator::Hamiltonian => {
            ("[[0, D K], [-D' Kᵀ, 0]], D = diag σ'(K z + b), D' = diag σ'(Kᵀ y + b)", "h s_max", "h s_max(K) < 2")
        }
        Integrator::Leapfrog => {
            ("-Kᵀ diag(σ'(K y + b)) K", "h²λmax(KᵀDK)", "h² λ_max(Kᵀ D K) <= 4 (implied by h s_max(K) < 2)")
        }
    }
}
