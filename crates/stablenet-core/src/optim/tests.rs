//! Tests of the optimisers (kept apart so that optim.rs stays short).
use super::*;
use crate::rng::Rng;

type State<T> = Vec<(String, Vec<usize>, Vec<T>)>;

fn random<T: Real>(seed: u64) -> Params<T> {
    let mut p = Params::zeros_shape(2, 3, 4, 2);
    let mut rng = Rng::new(seed);
    for (_, v) in p.groups_mut() {
        v.iter_mut().for_each(|x| *x = T::c(rng.normal()));
    }
    p
}

/// Gradient of 0.5 |p - target|^2.
fn quad_grad<T: Real>(p: &Params<T>, target: &Params<T>) -> Params<T> {
    let mut g = p.clone();
    g.axpy(-T::one(), target);
    g
}

fn dist<T: Real>(p: &Params<T>, q: &Params<T>) -> f64 {
    let d = quad_grad(p, q);
    d.dot(&d).f64().sqrt()
}

#[test]
fn kinds_parse_and_validate() {
    assert_eq!(OptimizerKind::from_name("sgd", 0.1).unwrap(), OptimizerKind::Sgd { lr: 0.1, momentum: 0.0 });
    let adam = OptimizerKind::from_name("Adam", 1e-3).unwrap();
    assert_eq!(adam, OptimizerKind::adam_with(1e-3, 0.9, 0.999, 1e-8).unwrap());
    assert_eq!((adam.name(), adam.lr()), ("adam", 1e-3));
    let sgd = OptimizerKind::from_name("sgd", 0.1).unwrap();
    assert_eq!(sgd.with_momentum(0.9).unwrap(), OptimizerKind::sgd(0.1, 0.9).unwrap());
    let cases = [
        (OptimizerKind::from_name("rmsprop", 0.1), "unknown optimizer"),
        (OptimizerKind::sgd(0.0, 0.0), "learning rate"),
        (OptimizerKind::sgd(f64::NAN, 0.0), "learning rate"),
        (OptimizerKind::adam(-1.0), "learning rate"),
        (OptimizerKind::sgd(0.1, 1.0), "momentum"),
        (OptimizerKind::sgd(0.1, -0.1), "momentum"),
        (adam.with_momentum(0.5), "sgd only"),
        (OptimizerKind::adam_with(0.1, 1.0, 0.9, 1e-8), "beta1"),
        (OptimizerKind::adam_with(0.1, 0.9, -0.1, 1e-8), "beta2"),
        (OptimizerKind::adam_with(0.1, 0.9, 0.99, 0.0), "eps"),
    ];
    for (r, why) in cases {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn sgd_steps_match_hand_values() {
    let mut p = Params::<f64>::zeros_shape(1, 1, 1, 2);
    p.fill(1.0);
    let mut g = p.zeros_like();
    g.fill(0.5);
    let mut opt = Optimizer::new(OptimizerKind::sgd(0.1, 0.9).unwrap(), &p).unwrap();
    opt.step(&mut p, &g).unwrap();
    // v = 0.5, p = 1 - 0.1 * 0.5
    assert!(p.groups().iter().all(|(_, v)| v.iter().all(|&x| x == 0.95)));
    opt.step(&mut p, &g).unwrap();
    // v = 0.9 * 0.5 + 0.5 = 0.95, p = 0.95 - 0.095
    assert!((p.mu[0] - 0.855).abs() < 1e-15);
    assert_eq!(opt.steps_taken(), 2);
    // The new learning rate is used at once.
    opt.set_lr(1.0).unwrap();
    assert_eq!(opt.lr(), 1.0);
    opt.step(&mut p, &g).unwrap();
    // v = 0.9 * 0.95 + 0.5 = 1.355, p = 0.855 - 1.355
    assert!((p.k[0] - (0.855 - 1.355)).abs() < 1e-15);
}

#[test]
fn adam_steps_match_hand_values() {
    let (lr, b1, b2, eps) = (0.01, 0.9, 0.999, 1e-8);
    let mut p = Params::<f64>::zeros_shape(1, 1, 1, 2);
    p.fill(1.0);
    let mut g = p.zeros_like();
    g.fill(0.5);
    let mut opt = Optimizer::new(OptimizerKind::adam_with(lr, b1, b2, eps).unwrap(), &p).unwrap();
    opt.step(&mut p, &g).unwrap();
    // m_hat = g, v_hat = g^2: p -= lr g / (|g| + eps)
    let p1 = 1.0 - lr * 0.5 / (0.5 + eps);
    assert!((p.k[0] - p1).abs() < 1e-15, "{} vs {p1}", p.k[0]);
    g.fill(-2.0);
    opt.step(&mut p, &g).unwrap();
    let m = b1 * (1.0 - b1) * 0.5 + (1.0 - b1) * -2.0;
    let v = b2 * (1.0 - b2) * 0.25 + (1.0 - b2) * 4.0;
    let (m_hat, v_hat) = (m / (1.0 - b1 * b1), v / (1.0 - b2 * b2));
    let p2 = p1 - lr * m_hat / (v_hat.sqrt() + eps);
    assert!((p.b_in[0] - p2).abs() < 1e-15, "{} vs {p2}", p.b_in[0]);
}

fn minimise<T: Real>(kind: OptimizerKind, steps: usize) -> f64 {
    let (mut p, target) = (random::<T>(1), random::<T>(2));
    let mut opt = Optimizer::new(kind, &p).unwrap();
    for _ in 0..steps {
        let g = quad_grad(&p, &target);
        opt.step(&mut p, &g).unwrap();
    }
    dist(&p, &target) / dist(&random::<T>(1), &target)
}

#[test]
fn sgd_minimises_a_quadratic() {
    assert!(minimise::<f64>(OptimizerKind::sgd(0.1, 0.0).unwrap(), 300) < 1e-10);
    assert!(minimise::<f64>(OptimizerKind::sgd(0.1, 0.9).unwrap(), 400) < 1e-7);
    assert!(minimise::<f32>(OptimizerKind::sgd(0.1, 0.9).unwrap(), 400) < 1e-5);
}

#[test]
fn adam_minimises_a_quadratic() {
    assert!(minimise::<f64>(OptimizerKind::adam(0.05).unwrap(), 2000) < 1e-6);
    assert!(minimise::<f32>(OptimizerKind::adam(0.05).unwrap(), 2000) < 1e-5);
}

#[test]
fn state_tensor_names_and_shapes() {
    let p = random::<f64>(3);
    let sgd = Optimizer::new(OptimizerKind::sgd(0.1, 0.5).unwrap(), &p).unwrap();
    let s = sgd.state_tensors();
    assert_eq!(s.len(), 7);
    let find = |s: &State<f64>, n: &str| s.iter().find(|t| t.0 == n).cloned().unwrap();
    assert_eq!(find(&s, "optim.velocity.steps.weight").1, vec![4, 3, 3]);
    assert_eq!(find(&s, "optim.t").1, vec![1]);
    let adam = Optimizer::new(OptimizerKind::adam(0.1).unwrap(), &p).unwrap();
    let s = adam.state_tensors();
    assert_eq!(s.len(), 13);
    assert_eq!(find(&s, "optim.adam_m.opening.bias").1, vec![3]);
    assert_eq!(find(&s, "optim.adam_v.classifier.weight").1, vec![2, 3]);
}

fn round_trip<T: Real>(kind: OptimizerKind) {
    let (mut pa, target) = (random::<T>(4), random::<T>(5));
    let step = |o: &mut Optimizer<T>, p: &mut Params<T>| {
        let g = quad_grad(p, &target);
        o.step(p, &g).unwrap();
    };
    let mut a = Optimizer::new(kind, &pa).unwrap();
    for _ in 0..5 {
        step(&mut a, &mut pa);
    }
    // A checkpoint also holds model tensors; they are ignored.
    let mut state = a.state_tensors();
    state.push(("steps.weight".into(), vec![1], vec![T::one()]));
    let mut pb = pa.clone();
    let mut b = Optimizer::new(kind, &pb).unwrap();
    b.load_state(&state).unwrap();
    assert_eq!(b.steps_taken(), 5);
    for _ in 0..7 {
        step(&mut a, &mut pa);
        step(&mut b, &mut pb);
    }
    assert_eq!(pa, pb);
    assert_eq!(a.state_tensors(), b.state_tensors());
}

#[test]
fn state_round_trip_continues_bit_identically() {
    round_trip::<f64>(OptimizerKind::sgd(0.05, 0.9).unwrap());
    round_trip::<f64>(OptimizerKind::adam(0.01).unwrap());
    round_trip::<f32>(OptimizerKind::sgd(0.05, 0.9).unwrap());
    round_trip::<f32>(OptimizerKind::adam(0.01).unwrap());
}

#[test]
fn load_state_rejects_bad_entries() {
    let p = random::<f64>(6);
    let adam_state = Optimizer::new(OptimizerKind::adam(0.1).unwrap(), &p).unwrap().state_tensors();
    let mut opt = Optimizer::new(OptimizerKind::adam(0.1).unwrap(), &p).unwrap();
    let edit = |f: &dyn Fn(&mut State<f64>)| {
        let mut s = adam_state.clone();
        f(&mut s);
        s
    };
    let negative = |s: &mut State<f64>| {
        let v = s.iter_mut().find(|t| t.0 == "optim.adam_v.classifier.weight").unwrap();
        v.2[1] = -0.25;
    };
    let cases: [(State<f64>, &str); 6] = [
        (edit(&|s| s.retain(|t| t.0 != "optim.adam_v.steps.bias")), "missing tensor optim.adam_v.steps.bias"),
        (edit(&negative), "optim.adam_v.classifier.weight holds a negative second moment (-0.25 at 1)"),
        (edit(&|s| s.retain(|t| t.0 != "optim.t")), "missing tensor optim.t"),
        (edit(&|s| s[2].2.pop().map(drop).unwrap()), "expected [4, 3, 3]"),
        (edit(&|s| s[0].1 = vec![6]), "has shape [6]"),
        (edit(&|s| s.last_mut().unwrap().2[0] = 1.5), "whole number"),
    ];
    for (state, why) in cases {
        let e = opt.load_state(&state).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    // Another optimizer's state is refused, and a failed load changes nothing.
    let mut sgd = Optimizer::new(OptimizerKind::sgd(0.1, 0.9).unwrap(), &p).unwrap();
    let e = sgd.load_state(&adam_state).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor optim.adam_m"), "{e}");
    assert_eq!(opt.steps_taken(), 0);
    assert!(opt.state_tensors().iter().all(|t| t.2.iter().all(|&x| x == 0.0)));
}
