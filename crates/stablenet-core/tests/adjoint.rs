//! Adjoint dot-product tests of single integrator steps (f64): for the tangent-linear map L
//! of a step (state and parameter perturbations in, state perturbation out) and the adjoint
//! step A, <L dx, ybar> = <dx, A ybar> must hold to round-off.
mod common;
use common::*;
use stablenet_core::integrators::{Scratch, Step, leapfrog, resnet, verlet};
use stablenet_core::real::dot;
use stablenet_core::{Activation, Integrator, Rng};

const H: f64 = 0.3;

fn close(lhs: f64, rhs: f64, what: &str) {
    let scale = lhs.abs().max(rhs.abs()).max(1e-3);
    assert!((lhs - rhs).abs() <= 1e-12 * scale, "{what}: <L dx, ybar> = {lhs} but <dx, A ybar> = {rhs}");
}

#[test]
fn euler_steps_resnet_and_antisym() {
    for (integrator, w) in [(Integrator::Resnet, 5), (Integrator::Antisym, 5), (Integrator::Antisym, 1)] {
        for act in [Activation::Tanh, Activation::Relu] {
            let mut rng = Rng::new(1);
            let (k, b) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let (dk, db) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let (y, dy0, ybar0) = (random_vec(w, &mut rng), random_vec(w, &mut rng), random_vec(w, &mut rng));
            let (mut m, mut dm) = (vec![0.0; w * w], vec![0.0; w * w]);
            resnet::operator(integrator, &k, w, 0.1, &mut m);
            resnet::operator(integrator, &dk, w, 0.0, &mut dm); // linear part of K -> M
            let st = Step::new(&m, &b, H, act);
            let mut sc = Scratch::new(w);
            let mut dy = dy0.clone();
            resnet::tangent_step(&st, &Step::new(&dm, &db, H, act), &y, &mut dy, &mut sc);
            let mut ybar = ybar0.clone();
            let (mut gm, mut gb, mut gk) = (vec![0.0; w * w], vec![0.0; w], vec![0.0; w * w]);
            resnet::adjoint_step(&st, &y, &mut ybar, &mut gm, &mut gb, &mut sc);
            resnet::operator_grad(integrator, &gm, w, &mut gk);
            let lhs = dot(&dy, &ybar0);
            let rhs = dot(&dy0, &ybar) + dot(&dk, &gk) + dot(&db, &gb);
            close(lhs, rhs, &format!("{integrator} {act} w={w}"));
        }
    }
}

#[test]
fn verlet_step_stored_and_rebuilt() {
    for act in [Activation::Tanh, Activation::Relu] {
        for w in [1, 4, 7] {
            let mut rng = Rng::new(2 + w as u64);
            let (k, b) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let (dk, db) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let (y0, z0): (Vec<f64>, Vec<f64>) = (random_vec(w, &mut rng), random_vec(w, &mut rng));
            let (dy0, dz0): (Vec<f64>, Vec<f64>) = (random_vec(w, &mut rng), random_vec(w, &mut rng));
            let (yb0, zb0): (Vec<f64>, Vec<f64>) = (random_vec(w, &mut rng), random_vec(w, &mut rng));
            let st = Step::new(&k, &b, H, act);
            let mut sc = Scratch::new(w);
            let (mut dy, mut dz) = (dy0.clone(), dz0.clone());
            verlet::tangent_step(&st, &Step::new(&dk, &db, H, act), &y0, &z0, &mut dy, &mut dz, &mut sc);
            let lhs = dot(&dy, &yb0) + dot(&dz, &zb0);
            let (mut y1, mut z1) = (y0.clone(), z0.clone());
            verlet::forward_step(&st, &mut y1, &mut z1, &mut sc);
            for stored in [true, false] {
                let (mut y, mut z) = (y1.clone(), z1.clone());
                let (mut yb, mut zb) = (yb0.clone(), zb0.clone());
                let (mut gk, mut gb) = (vec![0.0; w * w], vec![0.0; w]);
                let keep = stored.then_some((&y0[..], &z0[..]));
                verlet::adjoint_step(&st, &mut y, &mut z, keep, &mut yb, &mut zb, &mut gk, &mut gb, &mut sc);
                let rhs = dot(&dy0, &yb) + dot(&dz0, &zb) + dot(&dk, &gk) + dot(&db, &gb);
                close(lhs, rhs, &format!("verlet {act} w={w} stored={stored}"));
                // The fused adjoint also rebuilt (y_j, z_j).
                assert!(max_abs_diff(&y, &y0) < 1e-14 && max_abs_diff(&z, &z0) < 1e-14);
            }
        }
    }
}

#[test]
fn leapfrog_step_interior_and_first() {
    for act in [Activation::Tanh, Activation::Relu] {
        for w in [1, 4, 7] {
            let mut rng = Rng::new(30 + w as u64);
            let (k, b) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let (dk, db) = (random_vec::<f64>(w * w, &mut rng), random_vec::<f64>(w, &mut rng));
            let y: Vec<f64> = random_vec(w, &mut rng);
            let (dyp0, dy0): (Vec<f64>, Vec<f64>) = (random_vec(w, &mut rng), random_vec(w, &mut rng));
            let abar: Vec<f64> = random_vec(w, &mut rng);
            let st = Step::new(&k, &b, H, act);
            let mut sc = Scratch::new(w);
            for first in [false, true] {
                // At j = 0, y_{-1} = y_0: the two inputs are one variable.
                let dyp_in = if first { dy0.clone() } else { dyp0.clone() };
                let (mut dyp, mut dy) = (dyp_in.clone(), dy0.clone());
                leapfrog::tangent_step(&st, &Step::new(&dk, &db, H, act), &y, &mut dyp, &mut dy, &mut sc);
                let lhs = dot(&dy, &abar);
                let (mut a_cur, mut a_prev) = (vec![0.0; w], vec![0.0; w]);
                let (mut gk, mut gb, mut f) = (vec![0.0; w * w], vec![0.0; w], vec![0.0; w]);
                leapfrog::adjoint_step(
                    &st,
                    first,
                    &y,
                    &abar,
                    &mut a_cur,
                    &mut a_prev,
                    &mut gk,
                    &mut gb,
                    &mut f,
                    &mut sc,
                );
                let mut rhs = dot(&dy0, &a_cur) + dot(&dk, &gk) + dot(&db, &gb);
                if !first {
                    rhs += dot(&dyp_in, &a_prev);
                }
                close(lhs, rhs, &format!("leapfrog {act} w={w} first={first}"));
                let mut fr = vec![0.0; w];
                leapfrog::force(&st, &y, &mut fr, &mut sc);
                assert_eq!(f, fr, "adjoint step's F(y) is the force");
            }
        }
    }
}
