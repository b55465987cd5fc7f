//! Stability diagnostics (MODEL.md section 7): Jacobian spectra, the per-step report, forward
//! sensitivity and per-layer gradient norms.
mod common;

use common::{config, random_params};
use stablenet_core::diagnostics::eig::{eigenvalues, spectral_norm};
use stablenet_core::diagnostics::{
    GradStats, Linearisation, flow_jacobian, inspect, jacobian, mean_states, opening, sensitivity, walk,
};
use stablenet_core::integrators::Step;
use stablenet_core::{Activation, Integrator, ModelConfig, Network, Params, Rng};

fn random(len: usize, scale: f64, rng: &mut Rng) -> Vec<f64> {
    (0..len).map(|_| scale * rng.normal()).collect()
}

#[test]
fn leapfrog_jacobian_is_symmetric_negative_semidefinite() {
    let mut rng = Rng::new(7);
    for w in [1, 2, 5, 8] {
        for act in [Activation::Tanh, Activation::Relu] {
            let (k, b, y) = (random(w * w, 1.5, &mut rng), random(w, 0.5, &mut rng), random(w, 1.0, &mut rng));
            let st = Step::new(&k, &b, 0.1, act);
            let j = jacobian::leapfrog(&st, &y);
            for r in 0..w {
                for c in 0..w {
                    assert!((j[r * w + c] - j[c * w + r]).abs() < 1e-13, "symmetric");
                }
            }
            // The general (unsymmetric) solver must find real eigenvalues <= 0.
            let scale = spectral_norm(&j, w, w).unwrap().max(1.0);
            let eigs = eigenvalues(&j, w).unwrap();
            assert_eq!(eigs.len(), w);
            for e in eigs {
                assert!(e.im.abs() < 1e-10 * scale, "real: {e:?}");
                assert!(e.re < 1e-10 * scale, "<= 0: {e:?}");
            }
        }
    }
}

#[test]
fn hamiltonian_jacobian_has_a_purely_imaginary_spectrum() {
    let mut rng = Rng::new(8);
    let w = 6;
    let (k, b) = (random(w * w, 1.0, &mut rng), random(w, 0.3, &mut rng));
    let (y, z) = (random(w, 0.7, &mut rng), random(w, 0.7, &mut rng));
    let st = Step::new(&k, &b, 0.1, Activation::Tanh);
    let j = jacobian::hamiltonian(&st, &y, &z);
    let e = eigenvalues(&j, 2 * w).unwrap();
    assert_eq!(e.len(), 2 * w);
    assert!(e.iter().all(|v| v.re.abs() < 1e-9), "{e:?}");
    assert!(e.iter().any(|v| v.im.abs() > 0.1), "a genuine rotation: {e:?}");
    // At y = z = 0, b = 0: D = D' = I, so λ = ±i s_k(K).
    let zero = vec![0.0; w];
    let st0 = Step::new(&k, &zero, 0.1, Activation::Tanh);
    let e = eigenvalues(&jacobian::hamiltonian(&st0, &zero, &zero), 2 * w).unwrap();
    let top = e.iter().map(|v| v.im.abs()).fold(0.0, f64::max);
    assert!((top - spectral_norm(&k, w, w).unwrap()).abs() < 1e-9);
}

#[test]
fn euler_jacobian_matches_finite_differences() {
    let mut rng = Rng::new(9);
    let w = 5;
    let (m, b, y) = (random(w * w, 1.0, &mut rng), random(w, 0.3, &mut rng), random(w, 0.8, &mut rng));
    let st = Step::new(&m, &b, 0.1, Activation::Tanh);
    let j = jacobian::euler(&st, &y);
    let f = |y: &[f64]| -> Vec<f64> {
        (0..w).map(|r| (0..w).map(|c| m[r * w + c] * y[c]).sum::<f64>() + b[r]).map(f64::tanh).collect()
    };
    let eps = 1e-6;
    for c in 0..w {
        let (mut yp, mut ym) = (y.clone(), y.clone());
        yp[c] += eps;
        ym[c] -= eps;
        let (fp, fm) = (f(&yp), f(&ym));
        for r in 0..w {
            assert!(((fp[r] - fm[r]) / (2.0 * eps) - j[r * w + c]).abs() < 1e-8);
        }
    }
}

fn cfg(integrator: Integrator, w: usize, n: usize, t: f64) -> ModelConfig {
    ModelConfig { final_time: t, ..config(integrator, 2, w, n, 3) }
}

/// K_j = s * (rotation-free random matrix with s_max 1), b = 0.
fn fixed_k(c: &ModelConfig, k: &[f64]) -> Params<f64> {
    let mut p = random_params::<f64>(c, 3, 0.5);
    p.b.iter_mut().for_each(|v| *v = 0.0);
    p.k.chunks_exact_mut(c.width * c.width).for_each(|kj| kj.copy_from_slice(k));
    p
}

#[test]
fn inspect_flags_hamiltonian_steps_beyond_h_smax_two() {
    let w = 4;
    let mut rng = Rng::new(11);
    let mut k = random(w * w, 1.0, &mut rng);
    let s = spectral_norm(&k, w, w).unwrap();
    k.iter_mut().for_each(|v| *v /= s); // s_max(K) = 1
    let c = cfg(Integrator::Hamiltonian, w, 4, 1.0); // h = 0.25
    let big: Vec<f64> = k.iter().map(|v| v * 9.0).collect(); // h s_max = 2.25
    let mut p = fixed_k(&c, &k);
    p.k[w * w..2 * w * w].copy_from_slice(&big); // only step 1 breaks the bound
    let r = inspect(&c, &p, None).unwrap();
    assert_eq!(r.stable_steps, 3, "{}", r.summary);
    assert!(!r.per_step[1].stable && (r.per_step[1].h_s_max - 2.25).abs() < 1e-9);
    assert_eq!(r.worst_step, 1);
    assert!(r.summary.contains("3/4") && r.summary.contains("UNSTABLE"), "{}", r.summary);
    // Purely imaginary spectrum at every step, stable or not.
    assert!(r.per_step.iter().all(|d| d.max_re.abs() < 1e-9));
    // A small K passes everywhere, linearised at zero and at the mean data state.
    let p = fixed_k(&c, &k);
    let r = inspect(&c, &p, None).unwrap();
    assert_eq!(r.stable_steps, 4, "{}", r.summary);
    assert!(r.summary.ends_with("STABLE") && !r.summary.contains("UNSTABLE"));
    let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
    let states = mean_states(&c, &p, &x).unwrap();
    let r = inspect(&c, &p, Some((&states, Linearisation::MeanState { examples: 20 }))).unwrap();
    assert_eq!(r.stable_steps, 4);
    assert_eq!(r.linearised_at, Linearisation::MeanState { examples: 20 });
}

#[test]
fn inspect_conditions_of_the_other_integrators() {
    let w = 3;
    let eye = |a: f64| -> Vec<f64> { (0..w * w).map(|i| if i % (w + 1) == 0 { a } else { 0.0 }).collect() };
    // resnet: K = -I is stable for h <= 2 (|1 - h| <= 1), K = +I never (Re λ > 0).
    let c = cfg(Integrator::Resnet, w, 4, 1.0);
    assert_eq!(inspect(&c, &fixed_k(&c, &eye(-1.0)), None).unwrap().stable_steps, 4);
    let r = inspect(&c, &fixed_k(&c, &eye(1.0)), None).unwrap();
    assert_eq!(r.stable_steps, 0);
    assert!((r.per_step[0].max_re - 1.0).abs() < 1e-12 && (r.per_step[0].criterion - 1.25).abs() < 1e-12);
    // K = -12 I at h = 0.25: Re λ < 0 but |1 + hλ| = 2: Euler itself is unstable.
    assert_eq!(inspect(&c, &fixed_k(&c, &eye(-12.0)), None).unwrap().stable_steps, 0);
    // antisym: a rotation needs damping; gamma = 0 fails, enough gamma passes.
    let mut rot = vec![0.0; w * w];
    rot[1] = 0.4; // skew part +-0.2 at (0, 1), (1, 0)
    let mut c = cfg(Integrator::Antisym, w, 4, 1.0);
    c.gamma = 0.0;
    assert_eq!(inspect(&c, &fixed_k(&c, &rot), None).unwrap().stable_steps, 0);
    c.gamma = 0.5; // (1 - 0.0625)² + 0.0025 < 1
    assert_eq!(inspect(&c, &fixed_k(&c, &rot), None).unwrap().stable_steps, 4);
    // leapfrog: h² λ_max(KᵀK) = 0.0625 * 36 = 2.25 <= 4: stable; K = 9I gives 5.06 > 4.
    let c = cfg(Integrator::Leapfrog, w, 4, 1.0);
    let r = inspect(&c, &fixed_k(&c, &eye(6.0)), None).unwrap();
    assert_eq!(r.stable_steps, 4, "{}", r.summary);
    assert!((r.per_step[0].criterion - 2.25).abs() < 1e-12);
    assert!((r.per_step[0].max_re + 36.0).abs() < 1e-9, "J = -KᵀK = -36 I");
    assert_eq!(inspect(&c, &fixed_k(&c, &eye(9.0)), None).unwrap().stable_steps, 0);
    // Saturated units decide, not s_max: with b = 3, σ' = 1 - tanh²(3) ≈ 0.0099, so K = 9I has
    // h s_max = 2.25 but h² λ_max(Kᵀ D K) ≈ 0.050, which leapfrog integrates stably.
    let mut p = fixed_k(&c, &eye(9.0));
    p.b.iter_mut().for_each(|v| *v = 3.0);
    let r = inspect(&c, &p, None).unwrap();
    let want = 0.0625 * 81.0 * (1.0 - 3.0f64.tanh().powi(2));
    assert!((r.per_step[0].criterion - want).abs() < 1e-12, "{} vs {want}", r.per_step[0].criterion);
    assert!(r.per_step[0].h_s_max > 2.0 && r.stable_steps == 4, "{}", r.summary);
}

/// y_0 = 0: K_in = 0, b_in = 0.
fn from_zero(mut p: Params<f64>) -> Params<f64> {
    p.k_in.iter_mut().for_each(|v| *v = 0.0);
    p.b_in.iter_mut().for_each(|v| *v = 0.0);
    p
}

#[test]
fn resnet_sensitivity_at_zero_is_the_euler_growth_factor() {
    // K = a I, b = 0, y_0 = 0: the state stays 0, tanh'(0) = 1, and every step multiplies the
    // tangent by 1 + h a, so |dy_N/dy_0| = (1 + h a)^N exactly.
    let w = 4;
    for a in [2.0, -2.0, 0.5] {
        for n in [4, 16, 64, 256] {
            let c = cfg(Integrator::Resnet, w, n, 5.0);
            let k: Vec<f64> = (0..w * w).map(|i| if i % (w + 1) == 0 { a } else { 0.0 }).collect();
            let p = from_zero(fixed_k(&c, &k));
            let s = sensitivity(&c, &p, &[0.3, -0.2, 1.0, 0.5]).unwrap();
            let want = (1.0 + c.h() * a).abs().powi(n as i32);
            assert!((s.mean / want - 1.0).abs() < 1e-10, "a {a} N {n}: {} vs {want}", s.mean);
            assert!((s.mean_smallest / want - 1.0).abs() < 1e-10);
        }
    }
}

#[test]
fn hamiltonian_sensitivity_stays_order_one_across_depth() {
    let w = 4;
    let mut rng = Rng::new(12);
    let mut k = random(w * w, 1.0, &mut rng);
    let s = spectral_norm(&k, w, w).unwrap();
    k.iter_mut().for_each(|v| *v /= s); // h s_max = 5/N < 2 for N >= 4
    let x: Vec<f32> = (0..16).map(|i| (i as f32 * 0.71).cos()).collect();
    let mut seen = Vec::new();
    for n in [4, 8, 16, 32, 64, 128, 256] {
        let c = cfg(Integrator::Hamiltonian, w, n, 5.0);
        seen.push(sensitivity(&c, &fixed_k(&c, &k), &x).unwrap().mean);
    }
    println!("hamiltonian |dy_N/dy_0| for N = 4..256: {seen:.3?}");
    assert!(seen.iter().all(|s| (0.3..3.0).contains(s)), "{seen:?}");
    // The same K as a resnet with K = 2I grows like e^{2T}-ish instead.
    let c = cfg(Integrator::Resnet, w, 256, 5.0);
    let two: Vec<f64> = (0..w * w).map(|i| if i % (w + 1) == 0 { 2.0 } else { 0.0 }).collect();
    let s = sensitivity(&c, &from_zero(fixed_k(&c, &two)), &x[..2]).unwrap().mean;
    assert!(s > 1e4, "{s}");
}

/// dy_N/dy_0 from the tangent-linear steps against central differences of the forward pass.
#[test]
fn flow_jacobian_matches_finite_differences() {
    for integrator in Integrator::ALL {
        let c = cfg(integrator, 3, 7, 1.3);
        let p = random_params::<f64>(&c, 21, 0.8);
        let net = Network::new(&c, &p).unwrap();
        let y0 = opening(&net, &[0.4, -0.9]);
        let jac = flow_jacobian(&net, &y0);
        let eps = 1e-6;
        for i in 0..3 {
            let (mut yp, mut ym) = (y0.clone(), y0.clone());
            yp[i] += eps;
            ym[i] -= eps;
            let (fp, fm) = (walk(&net, &yp, |_, _, _, _| {}), walk(&net, &ym, |_, _, _, _| {}));
            for r in 0..3 {
                let fd = (fp[r] - fm[r]) / (2.0 * eps);
                assert!((fd - jac[r * 3 + i]).abs() < 1e-7, "{integrator} ({r}, {i}): {fd} vs {}", jac[r * 3 + i]);
            }
        }
    }
}

#[test]
fn grad_stats_summarise_layer_norms() {
    let g = GradStats::of(&[4.0, 1.0, 3.0, 2.0]);
    assert_eq!((g.min, g.median, g.max, g.first_over_last, g.first_over_median), (1.0, 2.5, 4.0, 2.0, 1.6));
    assert!(GradStats::of(&[]).median.is_nan());
}
