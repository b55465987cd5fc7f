//! `leapfrog`: the second-order step y_{j+1} = 2 y_j - y_{j-1} + h^2 F_j(y_j) with
//! F_j(y) = -K_j^T sigma(K_j y + b_j) and y_{-1} = y_0 (MODEL.md section 2). It inverts exactly
//! (section 3): y_{j-1} = 2 y_j - y_{j+1} + h^2 F_j(y_j).
use super::{Scratch, Step, affine};
use crate::linalg::{add_outer, matvec, matvec_t};
use crate::real::Real;

/// f = F(y) = -K^T sigma(K y + b); leaves u = K y + b in `sc.u`.
pub fn force<T: Real>(st: &Step<T>, y: &[T], f: &mut [T], sc: &mut Scratch<T>) {
    affine(st.k, y, st.b, &mut sc.u);
    for (si, ui) in sc.s.iter_mut().zip(&sc.u) {
        *si = -st.act.f(*ui);
    }
    matvec_t(st.k, &sc.s, f);
}

/// (y_prev, y) = (y_{j-1}, y_j) <- (y_j, y_{j+1}).
pub fn forward_step<T: Real>(st: &Step<T>, y_prev: &mut [T], y: &mut [T], sc: &mut Scratch<T>) {
    let mut f = std::mem::take(&mut sc.v);
    force(st, y, &mut f, sc);
    let h2 = st.h * st.h;
    let two = T::c(2.0);
    for i in 0..y.len() {
        let next = two * y[i] - y_prev[i] + h2 * f[i];
        y_prev[i] = y[i];
        y[i] = next;
    }
    sc.v = f;
}

/// (y_next, y) = (y_{j+1}, y_j) <- (y_j, y_{j-1}): the step run backwards in time.
pub fn reverse_step<T: Real>(st: &Step<T>, y_next: &mut [T], y: &mut [T], sc: &mut Scratch<T>) {
    // The same arithmetic as the forward step with the roles of y_{j-1} and y_{j+1} swapped.
    forward_step(st, y_next, y, sc);
}

/// The adjoint of step j (MODEL.md section 4) with accumulators a_next = a_{j+1} (complete),
/// a_cur = a_j and a_prev = a_{j-1} (partial): a_j += 2 a_{j+1} - K^T g,
/// a_{j-1} -= a_{j+1} (for j = 0, where y_{-1} = y_0: a_0 += a_1 - K^T g), and
/// dK += -(sigma(u) v^T + g y^T), db -= g, with v = h^2 a_{j+1}, u = K y_j + b,
/// g = sigma'(u) * (K v). Writes F_j(y_j) into `f`, which the reverse-time rebuild needs.
#[allow(clippy::too_many_arguments)]
pub fn adjoint_step<T: Real>(
    st: &Step<T>,
    first: bool,
    y: &[T],
    a_next: &[T],
    a_cur: &mut [T],
    a_prev: &mut [T],
    dk: &mut [T],
    db: &mut [T],
    f: &mut [T],
    sc: &mut Scratch<T>,
) {
    let w = y.len();
    let h2 = st.h * st.h;
    affine(st.k, y, st.b, &mut sc.u);
    for i in 0..w {
        sc.v[i] = h2 * a_next[i];
    }
    matvec(st.k, &sc.v, &mut sc.s); // K v
    for i in 0..w {
        sc.s[i] *= st.act.df(sc.u[i]); // g
        sc.u[i] = -st.act.f(sc.u[i]); // -sigma(u)
    }
    matvec_t(st.k, &sc.u, f); // F = -K^T sigma(u)
    matvec_t(st.k, &sc.s, &mut sc.t); // K^T g
    let carry = if first { T::one() } else { T::c(2.0) };
    for i in 0..w {
        a_cur[i] += carry * a_next[i] - sc.t[i];
    }
    if !first {
        a_prev.iter_mut().zip(a_next).for_each(|(p, n)| *p -= *n);
    }
    add_outer(dk, &sc.u, &sc.v); // -sigma(u) v^T
    for gi in sc.s.iter_mut() {
        *gi = -*gi;
    }
    add_outer(dk, &sc.s, y); // -g y^T
    db.iter_mut().zip(&sc.s).for_each(|(a, b)| *a += *b);
}

/// Tangent-linear step at (y_{j-1}, y_j) with parameter perturbation `dst` (dK, db):
/// (dy_prev, dy) <- (dy_j, dy_{j+1}), where
/// dy_{j+1} = 2 dy_j - dy_{j-1} - h^2 (dK^T sigma(u) + K^T (sigma'(u) * (K dy_j + dK y_j + db))).
pub fn tangent_step<T: Real>(
    st: &Step<T>,
    dst: &Step<T>,
    y: &[T],
    dy_prev: &mut [T],
    dy: &mut [T],
    sc: &mut Scratch<T>,
) {
    let w = y.len();
    let h2 = st.h * st.h;
    affine(st.k, y, st.b, &mut sc.u);
    affine(dst.k, y, dst.b, &mut sc.s);
    matvec(st.k, dy, &mut sc.t);
    for i in 0..w {
        sc.s[i] = st.act.df(sc.u[i]) * (sc.t[i] + sc.s[i]);
        sc.u[i] = st.act.f(sc.u[i]);
    }
    matvec_t(st.k, &sc.s, &mut sc.t); // K^T (sigma' * du)
    matvec_t(dst.k, &sc.u, &mut sc.v); // dK^T sigma(u)
    let two = T::c(2.0);
    for i in 0..w {
        let next = two * dy[i] - dy_prev[i] - h2 * (sc.v[i] + sc.t[i]);
        dy_prev[i] = dy[i];
        dy[i] = next;
    }
}
