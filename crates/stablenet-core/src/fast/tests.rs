//! The fast path against the f64 reference, and its determinism.
use super::*;
use crate::network::GradMethod;
use crate::rng::Rng;

fn config(integrator: Integrator, activation: Activation, d: usize, w: usize, steps: usize, c: usize) -> ModelConfig {
    ModelConfig {
        d,
        width: w,
        steps,
        final_time: 1.7,
        integrator,
        activation,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: c,
    }
}

/// Every entry random (biases too, so every gradient group is non-trivial).
fn random_params(cfg: &ModelConfig, seed: u64) -> Params<f32> {
    let mut p = Params::<f32>::zeros(cfg);
    let mut rng = Rng::new(seed);
    for (name, v) in p.groups_mut() {
        let s = match name {
            "steps.weight" => 1.0 / (cfg.width as f64).sqrt(),
            "opening.weight" => 1.0 / (cfg.d as f64).sqrt(),
            _ => 0.5,
        };
        v.iter_mut().for_each(|x| *x = (s * rng.normal()) as f32);
    }
    p
}

fn random_batch(cfg: &ModelConfig, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let x = (0..n * cfg.d).map(|_| rng.normal() as f32).collect();
    let labels = (0..n).map(|_| rng.below(cfg.classes) as u32).collect();
    (x, labels)
}

/// Worst over groups of max |fast - ref| / max |ref|, and the loss's relative error.
fn compare(fast: &LossGrad<f32>, want: &LossGrad<f64>) -> (f64, &'static str, f64) {
    let mut worst = (0.0, "");
    for ((name, a), (_, b)) in fast.grad.groups().into_iter().zip(want.grad.groups()) {
        // NaN-aware: a non-finite entry or a length mismatch is an infinite error.
        let (_, err) = crate::compare::errors_floored(a, b, 1e-30);
        if err > worst.0 {
            worst = (err, name);
        }
    }
    (worst.0, worst.1, (fast.loss as f64 - want.loss).abs() / want.loss.abs())
}

const CASES: [(usize, usize, usize, usize, usize); 7] = [
    // (d, w, N, C, n); w >= 16 takes the transposed reductions (17: padded to 32 columns)
    (2, 8, 6, 5, 37),
    (3, 1, 1, 2, 16),
    (4, 7, 3, 3, 70),
    (2, 13, 4, 4, 33),
    (5, 32, 2, 10, 19),
    (3, 17, 3, 4, 41),
    (2, 8, 24, 5, 300),
];

#[test]
fn matches_the_f64_reference() {
    // Which instruction sets the three choices below reach on this CPU: every one it has, so a
    // CPU with AVX-512 (CI's) tests all three kernel builds, not three names for one.
    let reached: std::collections::BTreeSet<&str> =
        [Kernels::Auto, Kernels::Avx2, Kernels::Portable].iter().map(|k| k.resolved()).collect();
    println!("instruction sets tested: {reached:?}");
    #[cfg(target_arch = "x86_64")]
    {
        let want = 1
            + usize::from(crate::fast::simd::Avx2::new().is_some())
            + usize::from(crate::fast::simd::Avx512::new().is_some());
        assert_eq!(reached.len(), want, "{reached:?}");
    }
    let mut worst = (0.0, String::new());
    for integrator in Integrator::ALL {
        for activation in [Activation::Tanh, Activation::Relu] {
            for (case, &(d, w, steps, c, n)) in CASES.iter().enumerate() {
                let cfg = config(integrator, activation, d, w, steps, c);
                let p = random_params(&cfg, 10 + case as u64);
                let (x, labels) = random_batch(&cfg, n, 20 + case as u64);
                let want = crate::network::loss_grad(&cfg, &p.cast::<f64>(), &x, &labels, GradMethod::Stored).unwrap();
                for kernels in [Kernels::Auto, Kernels::Avx2, Kernels::Portable] {
                    let mut ws = FastWorkspace::with_layout(&cfg, Layout::new(2)).unwrap();
                    ws.set_kernels(kernels);
                    let got = loss_grad_with(&mut ws, &cfg, &p, &x, &labels, 2).unwrap().clone();
                    let (err, group, loss_err) = compare(&got, &want);
                    let tag = format!(
                        "{integrator} {activation} d={d} w={w} N={steps} C={c} n={n} {kernels:?} ({})",
                        kernels.resolved()
                    );
                    assert!(err <= 1e-4, "{tag}: {group} relative error {err:.2e}");
                    assert!(loss_err <= 1e-5, "{tag}: loss relative error {loss_err:.2e}");
                    assert_eq!(got.correct, want.correct, "{tag}: hits");
                    if err > worst.0 {
                        worst = (err, format!("{tag}: {group}"));
                    }
                }
            }
        }
    }
    println!("worst relative gradient error {:.2e} ({})", worst.0, worst.1);
}

#[test]
fn default_layout_matches_the_reference_at_depth() {
    // The BENCH.md shape (T = 5, K_j ~ N(0, 1/w)) at modest depths, with the default layout.
    for (integrator, steps) in
        [(Integrator::Hamiltonian, 64), (Integrator::Hamiltonian, 256), (Integrator::Leapfrog, 64)]
    {
        let mut cfg = config(integrator, Activation::Tanh, 2, 8, steps, 5);
        cfg.final_time = 5.0;
        let p = Params::<f32>::init(&cfg, 3);
        let (x, labels) = random_batch(&cfg, 1000, 4);
        let want = crate::network::loss_grad(&cfg, &p.cast::<f64>(), &x, &labels, GradMethod::Stored).unwrap();
        let got = loss_grad(&cfg, &p, &x, &labels, 2).unwrap();
        let (err, group, loss_err) = compare(&got, &want);
        println!("{integrator} N = {steps}, T = 5: worst relative error {err:.2e} ({group}), loss {loss_err:.2e}");
        assert!(err <= 1e-4 && loss_err <= 1e-5, "{integrator} N = {steps}: {group}: {err:.2e}, loss {loss_err:.2e}");
        assert_eq!(got.correct, want.correct);
        assert_eq!(got.stored_states, 0);
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    for integrator in Integrator::ALL {
        let cfg = config(integrator, Activation::Tanh, 3, 9, 5, 4);
        let p = random_params(&cfg, 5);
        let (x, labels) = random_batch(&cfg, 700, 6);
        let mut ws = FastWorkspace::with_layout(&cfg, Layout::new(1)).unwrap();
        let one = loss_grad_with(&mut ws, &cfg, &p, &x, &labels, 1).unwrap().clone();
        for threads in [2, 3, 0] {
            let other = loss_grad_with(&mut ws, &cfg, &p, &x, &labels, threads).unwrap();
            assert_eq!(one.loss.to_bits(), other.loss.to_bits(), "{integrator}, {threads} threads");
            assert_eq!(one.correct, other.correct);
            for ((name, a), (_, b)) in one.grad.groups().into_iter().zip(other.grad.groups()) {
                assert!(
                    a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits()),
                    "{integrator} {name}, {threads} threads"
                );
            }
        }
        // A fresh workspace gives the same bits too.
        let fresh = FastWorkspace::with_layout(&cfg, Layout::new(1))
            .and_then(|mut ws| loss_grad_with(&mut ws, &cfg, &p, &x, &labels, 2).cloned())
            .unwrap();
        assert_eq!(fresh.grad, one.grad);
    }
}

#[test]
fn memory_beyond_parameter_shaped_buffers_is_flat_in_depth() {
    // MODEL.md section 3: reverse time needs no stored state, and the gradient is summed in
    // place (no per-chunk copies), so only parameter-shaped buffers grow with N.
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog] {
        let bytes = |steps: usize| {
            let cfg = config(integrator, Activation::Tanh, 2, 8, steps, 5);
            let p = random_params(&cfg, 1);
            let (x, labels) = random_batch(&cfg, 1000, 2);
            let mut ws = FastWorkspace::new(&cfg).unwrap();
            loss_grad_with(&mut ws, &cfg, &p, &x, &labels, 2).unwrap();
            (ws.work_bytes(), ws.param_shaped_bytes(), p.num_values() * 4)
        };
        let (small, big) = (bytes(4), bytes(400));
        assert_eq!(small.0, big.0, "{integrator}: work bytes at N = 4 and 400");
        assert!(small.0 > 0);
        // What grows: per step the packed M_j and M_j^T (w = 8 is a whole number of panels of
        // 4 rows) and the gradient's K_j and b_j, as the parameters themselves.
        assert_eq!(big.1 - small.1, 396 * 4 * (2 * 8 * 8 + 8 * 8 + 8), "{integrator}");
        assert_eq!(big.2 - small.2, 396 * 4 * (8 * 8 + 8));
    }
}

#[test]
fn rejects_bad_input() {
    let cfg = config(Integrator::Hamiltonian, Activation::Tanh, 2, 4, 3, 3);
    let p = random_params(&cfg, 1);
    assert!(loss_grad(&cfg, &p, &[0.0; 4], &[0, 3], 1).is_err());
    assert!(loss_grad(&cfg, &p, &[0.0; 3], &[0, 1], 1).is_err());
    assert!(loss_grad(&cfg, &p, &[], &[], 1).is_err());
    let other = config(Integrator::Leapfrog, Activation::Tanh, 2, 4, 3, 3);
    let mut ws = FastWorkspace::new(&other).unwrap();
    assert!(loss_grad_with(&mut ws, &cfg, &p, &[0.0; 4], &[0, 1], 1).is_err());
}
