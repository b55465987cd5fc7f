//! Trajectories: the states y_0, y_1, ..., y_N of every example, the paper's view of a network
//! as a discretised flow (MODEL.md sections 1 and 2). For plots and diagnostics; training never
//! needs them.
use crate::config::{Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::integrators::{Scratch, leapfrog, resnet, verlet};
use crate::network::Network;
use crate::params::Params;
use crate::real::Real;

/// For each example of `x` (n x d row-major), its states y_0 ... y_N flattened step-major:
/// element `[j * w + i]` is coordinate i of y_j ((N + 1) x w values per example). hamiltonian
/// returns y (not the momentum z); leapfrog returns y_j (not y_{j-1}).
///
/// The arithmetic is the forward pass of [`Network`] (same opening, same step functions in the
/// same order), so y_N is bit-equal to what [`Network::states`] gives.
pub fn trajectory<T: Real>(cfg: &ModelConfig, p: &Params<T>, x: &[f32]) -> Result<Vec<Vec<T>>> {
    let net = Network::new(cfg, p)?;
    let (d, w, n_steps) = (cfg.d, cfg.width, cfg.steps);
    if !x.len().is_multiple_of(d) {
        return Err(Error::Shape(format!("x holds {} values, not a multiple of d = {d}", x.len())));
    }
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Data(format!("example {} has a non-finite input {}", k / d, x[k])));
    }
    let mut xi = vec![T::zero(); d];
    let (mut y, mut z, mut u) = (vec![T::zero(); w], vec![T::zero(); w], vec![T::zero(); w]);
    let mut sc = Scratch::new(w);
    let mut out = Vec::with_capacity(x.len() / d);
    for xs in x.chunks_exact(d) {
        xi.iter_mut().zip(xs).for_each(|(a, b)| *a = T::c(*b as f64));
        let mut states = Vec::with_capacity((n_steps + 1) * w);
        // Opening layer, as Network::open: u = K_in x + b_in, y = sigma(u).
        crate::linalg::matvec(&p.k_in, &xi, &mut u);
        for ((yi, ui), bi) in y.iter_mut().zip(u.iter_mut()).zip(&p.b_in) {
            *ui += *bi;
            *yi = cfg.activation.f(*ui);
        }
        match cfg.integrator {
            Integrator::Hamiltonian => z.iter_mut().for_each(|v| *v = T::zero()),
            Integrator::Leapfrog => z.copy_from_slice(&y), // y_{-1} = y_0
            _ => {}
        }
        states.extend_from_slice(&y);
        for j in 0..n_steps {
            let st = net.step(j);
            match cfg.integrator {
                Integrator::Resnet | Integrator::Antisym => resnet::forward_step(&st, &mut y, &mut sc),
                Integrator::Hamiltonian => verlet::forward_step(&st, &mut y, &mut z, &mut sc),
                Integrator::Leapfrog => leapfrog::forward_step(&st, &mut z, &mut y, &mut sc),
            }
            states.extend_from_slice(&y);
        }
        out.push(states);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;
    use crate::network::{GradMethod, Workspace};

    fn cfg(integrator: Integrator, activation: Activation) -> ModelConfig {
        ModelConfig {
            d: 3,
            width: 5,
            steps: 7,
            final_time: 2.0,
            integrator,
            activation,
            gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
            classes: 3,
        }
    }

    fn inputs(n: usize, d: usize) -> Vec<f32> {
        (0..n * d).map(|i| ((i as f32) * 0.37).sin() * 1.5).collect()
    }

    fn check<T: Real>(cfg: &ModelConfig) {
        let p = Params::<T>::init(cfg, 11);
        let x = inputs(6, cfg.d);
        let traj = trajectory(cfg, &p, &x).unwrap();
        assert_eq!(traj.len(), 6);
        let net = Network::new(cfg, &p).unwrap();
        let mut ws = Workspace::new(cfg, GradMethod::Stored);
        let w = cfg.width;
        let (mut y0, mut y_n) = (vec![T::zero(); w], vec![T::zero(); w]);
        for (xs, states) in x.chunks_exact(cfg.d).zip(&traj) {
            assert_eq!(states.len(), (cfg.steps + 1) * w);
            let xi: Vec<T> = xs.iter().map(|v| T::c(*v as f64)).collect();
            net.states(&xi, &mut y0, &mut y_n, &mut ws);
            // Bit-equal: the same arithmetic in the same order.
            assert_eq!(&states[..w], &y0[..], "{} y_0", cfg.integrator);
            assert_eq!(&states[cfg.steps * w..], &y_n[..], "{} y_N", cfg.integrator);
        }
        // The states move (relu with zero biases may leave an example at y = 0 throughout).
        assert!(traj.iter().any(|s| s[..w] != s[cfg.steps * w..]), "{}", cfg.integrator);
    }

    #[test]
    fn trajectory_ends_match_network_states_bit_for_bit() {
        for integrator in Integrator::ALL {
            for act in [Activation::Tanh, Activation::Relu] {
                check::<f32>(&cfg(integrator, act));
                check::<f64>(&cfg(integrator, act));
            }
        }
    }

    #[test]
    fn trajectory_middle_states_are_those_of_the_truncated_network() {
        for integrator in Integrator::ALL {
            let c = cfg(integrator, Activation::Tanh);
            let p = Params::<f64>::init(&c, 5);
            let x = inputs(3, c.d);
            let full = trajectory(&c, &p, &x).unwrap();
            let (w, j) = (c.width, 4);
            // The first j steps at the same h: a network of depth j and final time j h.
            let mut short = c.clone();
            (short.steps, short.final_time) = (j, c.final_time * j as f64 / c.steps as f64);
            let mut q = Params::<f64>::zeros(&short);
            q.k_in.clone_from(&p.k_in);
            q.b_in.clone_from(&p.b_in);
            q.k.copy_from_slice(&p.k[..j * w * w]);
            q.b.copy_from_slice(&p.b[..j * w]);
            let part = trajectory(&short, &q, &x).unwrap();
            for (a, b) in full.iter().zip(&part) {
                let err = a[..(j + 1) * w].iter().zip(b).fold(0f64, |m, (u, v)| m.max((u - v).abs()));
                assert!(err < 1e-12, "{integrator}: {err}");
            }
        }
    }

    #[test]
    fn trajectory_of_one_step_network_and_bad_inputs() {
        let mut c = cfg(Integrator::Leapfrog, Activation::Tanh);
        c.steps = 1;
        let p = Params::<f64>::init(&c, 2);
        let t = trajectory(&c, &p, &inputs(2, 3)).unwrap();
        assert_eq!(t[0].len(), 2 * c.width);
        assert!(trajectory(&c, &p, &inputs(2, 3)[..5]).unwrap_err().to_string().contains("multiple of d = 3"));
        let mut x = inputs(2, 3);
        x[4] = f32::NAN;
        assert!(trajectory(&c, &p, &x).unwrap_err().to_string().contains("example 1"));
        assert!(trajectory(&c, &p, &[]).unwrap().is_empty());
    }
}
