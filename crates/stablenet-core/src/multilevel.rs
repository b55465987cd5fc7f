//! Multi-level training by depth prolongation (MODEL.md section 6).
//!
//! A net trained with N steps at h = T/N becomes a net with 2N steps at h/2 (T fixed):
//! (K_j, b_j) live at t_j = j h; the new step i sits at t'_i = i h/2 and takes the
//! linear interpolation in time, constant beyond the last node t_{N-1}.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::real::Real;

/// Doubles the depth of a network (MODEL.md section 6): returns the configuration with
/// 2N steps (same final time, so h halves) and the prolongated parameters. Opening and
/// classifier are copied. An error if `p` does not have the shapes of `cfg`, or 2N steps are
/// more than a model may have.
pub fn prolongate<T: Real>(cfg: &ModelConfig, p: &Params<T>) -> Result<(ModelConfig, Params<T>)> {
    p.check_shape(cfg)?;
    let mut fine_cfg = cfg.clone();
    fine_cfg.steps = 2 * cfg.steps;
    fine_cfg.validate()?;
    Ok((fine_cfg, prolongate_params(p)))
}

/// The parameter part of [`prolongate`]: 2N steps from N, everything else copied.
pub fn prolongate_params<T: Real>(p: &Params<T>) -> Params<T> {
    let n = p.n;
    let mut q = p.clone();
    q.n = 2 * n;
    q.k = interpolate(&p.k, n, p.w * p.w);
    q.b = interpolate(&p.b, n, p.w);
    q
}

/// Linear interpolation of N blocks of `len` values from t_j = j h onto t'_i = i h/2,
/// i = 0..2N-1: even i takes node i/2, odd i = 2m+1 the mean of nodes m and m+1, or node
/// N-1 when m+1 > N-1 (constant extrapolation).
pub(crate) fn interpolate<T: Real>(x: &[T], n: usize, len: usize) -> Vec<T> {
    let half = T::c(0.5);
    let node = |j: usize| &x[j * len..(j + 1) * len];
    let mut out = Vec::with_capacity(2 * n * len);
    for i in 0..2 * n {
        let m = i / 2;
        if i % 2 == 0 || m + 1 > n - 1 {
            out.extend_from_slice(node(m));
        } else {
            let (a, b) = (node(m), node(m + 1));
            out.extend(a.iter().zip(b).map(|(&u, &v)| half * (u + v)));
        }
    }
    out
}

/// Parses a level schedule such as "4,8,16,32": positive step counts, each double the
/// previous one (MODEL.md section 6).
pub fn levels(spec: &str) -> Result<Vec<usize>> {
    let bad = |m: String| Error::Config(format!("level schedule {spec:?}: {m}"));
    let mut out: Vec<usize> = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let n: usize = item.parse().map_err(|_| {
            bad(format!("{item:?} is not a step count; write positive integers separated by commas, e.g. 4,8,16"))
        })?;
        if n == 0 {
            return Err(bad("step counts must be at least 1".into()));
        }
        if let Some(&prev) = out.last()
            && prev.checked_mul(2) != Some(n)
        {
            return Err(bad(format!(
                "each level must double the previous one, but {n} follows {prev} (expected {})",
                prev.saturating_mul(2)
            )));
        }
        out.push(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Activation, Integrator};

    fn cfg(n: usize) -> ModelConfig {
        ModelConfig {
            d: 2,
            width: 3,
            steps: n,
            final_time: 5.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 4,
        }
    }

    /// K_j = alpha_j + slope_j * j elementwise; b_j likewise.
    fn linear_in_time(c: &ModelConfig) -> Params<f64> {
        let mut p = Params::init(c, 7);
        let (w, n) = (c.width, c.steps);
        for j in 0..n {
            for e in 0..w * w {
                p.k[j * w * w + e] = 0.25 * e as f64 - 1.0 + 0.5 * (e as f64 + 1.0) * j as f64;
            }
            for e in 0..w {
                p.b[j * w + e] = e as f64 - 0.75 * j as f64;
            }
        }
        p
    }

    #[test]
    fn shapes_and_config_are_updated() {
        let c = cfg(4);
        let p = Params::<f32>::init(&c, 1);
        let (c2, q) = prolongate(&c, &p).unwrap();
        assert_eq!(c2.steps, 8);
        assert_eq!(c2.final_time, c.final_time);
        assert!((c2.h() - c.h() / 2.0).abs() < 1e-15);
        c2.validate().unwrap();
        q.check_shape(&c2).unwrap();
        assert_eq!((q.k_in.clone(), q.b_in.clone()), (p.k_in.clone(), p.b_in.clone()));
        assert_eq!((q.wc.clone(), q.mu.clone()), (p.wc.clone(), p.mu.clone()));
    }

    #[test]
    fn constant_in_time_stays_constant() {
        let c = cfg(3);
        let mut p = Params::<f64>::init(&c, 2);
        let (k0, b0) = (p.k_step(0).to_vec(), vec![0.3, -0.1, 2.0]);
        for j in 0..3 {
            p.k[j * 9..(j + 1) * 9].copy_from_slice(&k0);
            p.b[j * 3..(j + 1) * 3].copy_from_slice(&b0);
        }
        let (_, q) = prolongate(&c, &p).unwrap();
        for i in 0..6 {
            assert_eq!(q.k_step(i), &k0[..]);
            assert_eq!(q.b_step(i), &b0[..]);
        }
    }

    #[test]
    fn linear_in_time_is_reproduced_at_interior_nodes() {
        let c = cfg(4);
        let p = linear_in_time(&c);
        let (_, q) = prolongate(&c, &p).unwrap();
        // Fine step i sits at coarse index i/2; exact for every i <= 2(N-1).
        for i in 0..=2 * (c.steps - 1) {
            let t = i as f64 / 2.0;
            for e in 0..9 {
                let want = 0.25 * e as f64 - 1.0 + 0.5 * (e as f64 + 1.0) * t;
                assert!((q.k_step(i)[e] - want).abs() < 1e-12, "i {i} e {e}");
            }
            for e in 0..3 {
                let want = e as f64 - 0.75 * t;
                assert!((q.b_step(i)[e] - want).abs() < 1e-12, "i {i} e {e}");
            }
        }
    }

    #[test]
    fn last_step_copies_last_node() {
        let c = cfg(4);
        let p = linear_in_time(&c);
        let (_, q) = prolongate(&c, &p).unwrap();
        assert_eq!(q.k_step(7), p.k_step(3));
        assert_eq!(q.b_step(7), p.b_step(3));
        assert_eq!(q.k_step(6), p.k_step(3));
        // N = 1: both fine steps copy the single node.
        let c1 = cfg(1);
        let p1 = Params::<f64>::init(&c1, 3);
        let (_, q1) = prolongate(&c1, &p1).unwrap();
        assert_eq!(q1.k, [p1.k.clone(), p1.k.clone()].concat());
    }

    #[test]
    fn levels_parse_and_reject() {
        assert_eq!(levels("4,8,16,32").unwrap(), vec![4, 8, 16, 32]);
        assert_eq!(levels(" 2, 4 ").unwrap(), vec![2, 4]);
        assert_eq!(levels("16").unwrap(), vec![16]);
        for (s, why) in [
            ("", "not a step count"),
            ("4,,8", "not a step count"),
            ("4,x", "not a step count"),
            ("-4,8", "not a step count"),
            ("0,0", "at least 1"),
            ("4,12", "double"),
            ("8,4", "double"),
            ("4,8,8", "double"),
        ] {
            let e = levels(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }
}
