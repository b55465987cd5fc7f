//! The regularisers of MODEL.md section 5:
//!
//! ```text
//! J_reg = (alpha_t / (2h)) sum_{j=0}^{N-2} (|K_{j+1}-K_j|_F^2 + |b_{j+1}-b_j|^2)   (smooth in time)
//!       + (alpha_w / 2) (sum_j |K_j|_F^2 + |K_in|_F^2 + |W|_F^2)                 (weight decay)
//! ```
//!
//! The biases b_in and mu are never decayed; b_j enters only the time term.
use crate::error::{Error, Result};
use crate::params::Params;
use crate::real::{Real, dot};

/// Weights of the two regularisers (both 0 means no regularisation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regularizer {
    /// alpha_t: smoothness in time of (K_j, b_j).
    pub alpha_t: f64,
    /// alpha_w: weight decay of K_in, K_j and W.
    pub alpha_w: f64,
}

impl Regularizer {
    /// A validated regulariser.
    pub fn new(alpha_t: f64, alpha_w: f64) -> Result<Self> {
        let r = Regularizer { alpha_t, alpha_w };
        r.validate()?;
        Ok(r)
    }

    /// Rejects negative or non-finite weights.
    pub fn validate(&self) -> Result<()> {
        for (name, a) in [("alpha_t", self.alpha_t), ("alpha_w", self.alpha_w)] {
            if !(a.is_finite() && a >= 0.0) {
                return Err(Error::Config(format!("regularisation weight {name} must be finite and >= 0, got {a}")));
            }
        }
        Ok(())
    }

    /// True when both weights are 0 (the regulariser contributes nothing).
    pub fn is_zero(&self) -> bool {
        self.alpha_t == 0.0 && self.alpha_w == 0.0
    }

    /// J_reg(p) at step size h (MODEL.md section 5).
    pub fn value<T: Real>(&self, p: &Params<T>, h: f64) -> T {
        self.eval(p, h, None)
    }

    /// Adds the gradient of J_reg at p into `grad` and returns J_reg(p).
    pub fn add_gradient<T: Real>(&self, p: &Params<T>, h: f64, grad: &mut Params<T>) -> T {
        assert_eq!(
            (p.d, p.w, p.n, p.c),
            (grad.d, grad.w, grad.n, grad.c),
            "regulariser: gradient and parameters differ in shape"
        );
        self.eval(p, h, Some(grad))
    }

    fn eval<T: Real>(&self, p: &Params<T>, h: f64, mut grad: Option<&mut Params<T>>) -> T {
        let mut total = T::zero();
        if self.alpha_t != 0.0 && p.n >= 2 {
            assert!(h.is_finite() && h > 0.0, "regulariser: step size h must be finite and > 0, got {h}");
            // d/dx of (a/(2h)) |x_{j+1} - x_j|^2 is (a/h)(x_{j+1} - x_j) at j+1 and minus that at j.
            let half = T::c(self.alpha_t / (2.0 * h));
            let full = T::c(self.alpha_t / h);
            let ww = p.w * p.w;
            let sk = time_diff(&p.k, ww, full, grad.as_mut().map(|g| &mut g.k[..]));
            let sb = time_diff(&p.b, p.w, full, grad.as_mut().map(|g| &mut g.b[..]));
            total += half * (sk + sb);
        }
        if self.alpha_w != 0.0 {
            let a = T::c(self.alpha_w);
            let half = T::c(self.alpha_w / 2.0);
            let sq = dot(&p.k, &p.k) + dot(&p.k_in, &p.k_in) + dot(&p.wc, &p.wc);
            total += half * sq;
            if let Some(g) = grad {
                crate::real::axpy(a, &p.k, &mut g.k);
                crate::real::axpy(a, &p.k_in, &mut g.k_in);
                crate::real::axpy(a, &p.wc, &mut g.wc);
            }
        }
        total
    }
}

/// sum_j |x_{j+1} - x_j|^2 over consecutive blocks of `len` values; adds
/// `coef * (x_{j+1} - x_j)` at block j+1 and subtracts it at block j of `grad`.
fn time_diff<T: Real>(x: &[T], len: usize, coef: T, mut grad: Option<&mut [T]>) -> T {
    let blocks = x.len().checked_div(len).unwrap_or(0);
    let mut s = T::zero();
    for j in 0..blocks.saturating_sub(1) {
        for i in 0..len {
            let (lo, hi) = (j * len + i, (j + 1) * len + i);
            let diff = x[hi] - x[lo];
            s += diff * diff;
            if let Some(g) = grad.as_mut() {
                g[hi] += coef * diff;
                g[lo] -= coef * diff;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(d: usize, w: usize, n: usize, c: usize, seed: u64) -> Params<f64> {
        let mut p = Params::zeros_shape(d, w, n, c);
        let mut rng = Rng::new(seed);
        for (_, v) in p.groups_mut() {
            v.iter_mut().for_each(|x| *x = rng.normal());
        }
        p
    }

    #[test]
    fn validation_rejects_bad_weights() {
        assert!(Regularizer::new(0.0, 0.0).unwrap().is_zero());
        assert!(!Regularizer::new(0.1, 0.0).unwrap().is_zero());
        for (at, aw) in [(-1.0, 0.0), (0.0, -1e-9), (f64::NAN, 0.0), (0.0, f64::INFINITY)] {
            let e = Regularizer::new(at, aw).unwrap_err().to_string();
            assert!(e.contains("finite and >= 0"), "{e}");
        }
    }

    #[test]
    fn value_by_hand_tiny_case() {
        // d = 1, w = 1, N = 3, C = 2; h = 0.5.
        let mut p = Params::<f64>::zeros_shape(1, 1, 3, 2);
        p.k = vec![1.0, 3.0, 0.0];
        p.b = vec![0.0, 1.0, 1.0];
        p.k_in = vec![2.0];
        p.b_in = vec![7.0]; // not decayed
        p.wc = vec![1.0, -1.0];
        p.mu = vec![5.0, 5.0]; // not decayed
        let r = Regularizer::new(0.2, 0.1).unwrap();
        // time: (0.2 / 1.0) * ((4 + 9) + (1 + 0)) = 2.8
        // decay: 0.05 * ((1 + 9 + 0) + 4 + 2) = 0.8
        let v = r.value(&p, 0.5);
        assert!((v - 3.6).abs() < 1e-12, "{v}");
        let mut g = p.zeros_like();
        let v2 = r.add_gradient(&p, 0.5, &mut g);
        assert_eq!(v, v2);
        // dK: time (alpha_t/h = 0.4) * [-2, 2 - (-3), -3] = [-0.8, 2.0, -1.2]; decay 0.1 K.
        let want_k = [-0.8 + 0.1, 0.4 * (2.0 + 3.0) + 0.3, 0.4 * -3.0 + 0.0];
        for (a, b) in g.k.iter().zip(want_k) {
            assert!((a - b).abs() < 1e-12, "{:?}", g.k);
        }
        assert_eq!(g.b_in, vec![0.0]);
        assert_eq!(g.mu, vec![0.0, 0.0]);
        assert!((g.k_in[0] - 0.2).abs() < 1e-12);
    }

    #[test]
    fn single_step_has_no_time_term() {
        let p = random(2, 3, 1, 2, 1);
        let only_t = Regularizer::new(5.0, 0.0).unwrap();
        assert_eq!(only_t.value(&p, 1.0), 0.0);
        let mut g = p.zeros_like();
        only_t.add_gradient(&p, 1.0, &mut g);
        assert_eq!(g.max_abs(), 0.0);
    }

    #[test]
    fn gradient_passes_taylor_test() {
        let (p, v) = (random(3, 4, 5, 3, 2), random(3, 4, 5, 3, 3));
        let r = Regularizer::new(0.7, 0.3).unwrap();
        let h = 0.25;
        let mut g = p.zeros_like();
        let j0 = r.add_gradient(&p, h, &mut g);
        let gv = g.dot(&v);
        // J is a homogeneous quadratic, so the remainder is exactly eps^2 J(v).
        let jv = r.value(&v, h);
        let mut prev: Option<f64> = None;
        let mut eps = 0.1;
        for _ in 0..8 {
            let mut q = p.clone();
            q.axpy(eps, &v);
            let rem = (r.value(&q, h) - j0 - eps * gv).abs();
            let exact = eps * eps * jv;
            assert!((rem - exact).abs() <= 1e-7 * exact, "{rem} vs {exact}");
            if let Some(pr) = prev {
                let ratio = pr / rem;
                assert!((3.5..=4.5).contains(&ratio), "ratio {ratio}");
            }
            prev = Some(rem);
            eps /= 2.0;
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let p = random(2, 3, 4, 2, 4);
        let r = Regularizer::new(0.5, 0.2).unwrap();
        let v64 = r.value(&p, 0.5);
        let v32 = r.value(&p.cast::<f32>(), 0.5);
        assert!((v32 as f64 - v64).abs() < 1e-5 * v64.abs());
    }
}
