//! Taylor tests of the exact gradient (f64): for a direction v in one parameter group,
//! r(eps) = |J(p + eps v) - J(p) - eps <g, v>| is O(eps^2), so it must fall by ~4x each time
//! eps halves. A wrong gradient leaves an O(eps) remainder (ratio ~2) and fails.
mod common;
use common::*;
use stablenet_core::params::GROUP_NAMES;
use stablenet_core::{Activation, GradMethod, Integrator, ModelConfig, Params, Rng, loss_grad};

fn loss(cfg: &ModelConfig, p: &Params<f64>, x: &[f32], l: &[u32]) -> f64 {
    loss_grad(cfg, p, x, l, GradMethod::Stored).unwrap().loss
}

fn taylor_ratios(cfg: &ModelConfig, method: GradMethod, group: &str, seed: u64) -> Vec<f64> {
    let p = random_params::<f64>(cfg, seed, 0.5);
    let (x, l) = random_batch(cfg, 6, seed + 1);
    let g = loss_grad(cfg, &p, &x, &l, method).unwrap().grad;
    let mut v = p.zeros_like();
    let mut rng = Rng::new(seed + 2);
    for (name, vals) in v.groups_mut() {
        if name == group {
            vals.iter_mut().for_each(|a| *a = rng.normal());
        }
    }
    let j0 = loss(cfg, &p, &x, &l);
    let slope = g.dot(&v);
    let mut rem = Vec::new();
    for k in 0..6 {
        let eps = 2e-3 / f64::from(1u32 << k);
        let mut q = p.clone();
        q.axpy(eps, &v);
        rem.push((loss(cfg, &q, &x, &l) - j0 - eps * slope).abs());
    }
    rem.windows(2).map(|r| r[0] / r[1]).collect()
}

fn assert_second_order(cfg: &ModelConfig, method: GradMethod) {
    for (gi, group) in GROUP_NAMES.iter().enumerate() {
        if cfg.integrator == Integrator::Antisym && cfg.width == 1 && *group == "steps.weight" {
            // A 1 x 1 K has no antisymmetric part: the loss does not depend on it.
            let p = random_params::<f64>(cfg, 3, 0.5);
            let (x, l) = random_batch(cfg, 4, 4);
            let g = loss_grad(cfg, &p, &x, &l, method).unwrap().grad;
            assert!(g.k.iter().all(|v| *v == 0.0), "antisym w = 1: dK must vanish");
            continue;
        }
        let ratios = taylor_ratios(cfg, method, group, 10 + gi as u64);
        assert!(
            ratios.iter().all(|r| (3.5..4.5).contains(r)),
            "{} {method:?} {group}: remainder ratios {ratios:?} (want ~4)",
            cfg.integrator
        );
    }
}

#[test]
fn taylor_every_group_every_integrator() {
    for integrator in Integrator::ALL {
        let cfg = config(integrator, 3, 4, 5, 3);
        assert_second_order(&cfg, GradMethod::Stored);
    }
}

#[test]
fn taylor_with_memory_saving_methods() {
    for integrator in Integrator::ALL {
        let cfg = config(integrator, 2, 3, 7, 4);
        let method = if integrator.is_reversible() { GradMethod::Reverse } else { GradMethod::Checkpoint(3) };
        assert_second_order(&cfg, method);
    }
}

#[test]
fn taylor_single_step_and_width_one() {
    for integrator in Integrator::ALL {
        assert_second_order(&config(integrator, 1, 1, 1, 2), GradMethod::Stored);
    }
}

/// relu has kinks; away from them the gradient is still exact. Small steps keep the
/// perturbed pre-activations on the same side of 0 with overwhelming probability.
#[test]
fn relu_gradient_matches_central_differences() {
    for integrator in Integrator::ALL {
        let mut cfg = config(integrator, 2, 4, 4, 3);
        cfg.activation = Activation::Relu;
        let p = random_params::<f64>(&cfg, 5, 0.5);
        let (x, l) = random_batch(&cfg, 5, 6);
        let g = loss_grad(&cfg, &p, &x, &l, GradMethod::default_for(&cfg)).unwrap().grad;
        let mut v = p.zeros_like();
        let mut rng = Rng::new(7);
        for (_, vals) in v.groups_mut() {
            vals.iter_mut().for_each(|a| *a = rng.normal());
        }
        let eps = 1e-6;
        let (mut a, mut b) = (p.clone(), p.clone());
        a.axpy(eps, &v);
        b.axpy(-eps, &v);
        let fd = (loss(&cfg, &a, &x, &l) - loss(&cfg, &b, &x, &l)) / (2.0 * eps);
        let exact = g.dot(&v);
        assert!((fd - exact).abs() <= 1e-6 * exact.abs().max(1e-3), "{integrator}: fd {fd} exact {exact}");
    }
}

/// Every gradient method computes the same gradient (f64: to round-off).
#[test]
fn methods_agree_in_f64() {
    for integrator in Integrator::ALL {
        let cfg = config(integrator, 2, 5, 13, 3);
        let p = random_params::<f64>(&cfg, 21, 0.5);
        let (x, l) = random_batch(&cfg, 9, 22);
        let reference = loss_grad(&cfg, &p, &x, &l, GradMethod::Stored).unwrap();
        let mut methods = vec![GradMethod::Checkpoint(1), GradMethod::Checkpoint(4), GradMethod::Checkpoint(50)];
        if integrator.is_reversible() {
            methods.push(GradMethod::Reverse);
        }
        for m in methods {
            let other = loss_grad(&cfg, &p, &x, &l, m).unwrap();
            assert_eq!(reference.loss, other.loss);
            for ((name, a), (_, b)) in reference.grad.groups().iter().zip(other.grad.groups()) {
                let err = max_abs_diff(a, b);
                assert!(err <= 1e-12 * max_abs(a).max(1.0), "{integrator} {m:?} {name}: {err}");
            }
        }
    }
}
