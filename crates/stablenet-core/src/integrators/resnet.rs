//! `resnet` and `antisym`: forward Euler, y_{j+1} = y_j + h sigma(M_j y_j + b_j)
//! (MODEL.md section 2), with M_j = K_j (resnet) or A_j = (K_j - K_j^T - gamma I) / 2
//! (antisym). Not invertible: gradients use stored or checkpointed states (section 3).
use super::{Scratch, Step, affine};
use crate::config::Integrator;
use crate::linalg::{add_outer, matvec, matvec_t};
use crate::real::Real;

/// The operator M_j that acts in the step, built once per pass from K_j.
pub fn operator<T: Real>(integrator: Integrator, k: &[T], w: usize, gamma: f64, m: &mut [T]) {
    match integrator {
        Integrator::Antisym => {
            let half = T::c(0.5);
            for i in 0..w {
                for j in 0..w {
                    m[i * w + j] = half * (k[i * w + j] - k[j * w + i]);
                }
                m[i * w + i] -= T::c(0.5 * gamma);
            }
        }
        _ => m.copy_from_slice(k),
    }
}

/// Maps a gradient G with respect to M_j onto K_j: dK += G (resnet) or (G - G^T) / 2
/// (antisym, MODEL.md section 2 notes).
pub fn operator_grad<T: Real>(integrator: Integrator, g: &[T], w: usize, dk: &mut [T]) {
    match integrator {
        Integrator::Antisym => {
            let half = T::c(0.5);
            for i in 0..w {
                for j in 0..w {
                    dk[i * w + j] += half * (g[i * w + j] - g[j * w + i]);
                }
            }
        }
        _ => dk.iter_mut().zip(g).for_each(|(a, b)| *a += *b),
    }
}

/// y <- y + h sigma(M y + b)
pub fn forward_step<T: Real>(st: &Step<T>, y: &mut [T], sc: &mut Scratch<T>) {
    affine(st.k, y, st.b, &mut sc.u);
    for (yi, ui) in y.iter_mut().zip(&sc.u) {
        *yi += st.h * st.act.f(*ui);
    }
}

/// Backpropagates through one step taken from `y` (the state before the step):
/// ybar <- ybar + M^T s, dM += s y^T, db += s, with s = sigma'(M y + b) * (h ybar).
pub fn adjoint_step<T: Real>(st: &Step<T>, y: &[T], ybar: &mut [T], dm: &mut [T], db: &mut [T], sc: &mut Scratch<T>) {
    affine(st.k, y, st.b, &mut sc.u);
    for ((si, ui), yb) in sc.s.iter_mut().zip(&sc.u).zip(ybar.iter()) {
        *si = st.act.df(*ui) * st.h * *yb;
    }
    matvec_t(st.k, &sc.s, &mut sc.t);
    ybar.iter_mut().zip(&sc.t).for_each(|(a, b)| *a += *b);
    add_outer(dm, &sc.s, y);
    db.iter_mut().zip(&sc.s).for_each(|(a, b)| *a += *b);
}

/// Tangent-linear step: given a perturbation (dM, db) of the step's parameters in `dst`
/// (its h and act are ignored), dy <- dy + h sigma'(M y + b) * (M dy + dM y + db).
pub fn tangent_step<T: Real>(st: &Step<T>, dst: &Step<T>, y: &[T], dy: &mut [T], sc: &mut Scratch<T>) {
    affine(st.k, y, st.b, &mut sc.u);
    affine(dst.k, y, dst.b, &mut sc.s);
    matvec(st.k, dy, &mut sc.t);
    for i in 0..dy.len() {
        dy[i] += st.h * st.act.df(sc.u[i]) * (sc.t[i] + sc.s[i]);
    }
}
