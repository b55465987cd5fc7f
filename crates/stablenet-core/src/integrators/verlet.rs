//! `hamiltonian`: the Verlet step on the coupled state (y, z), z_0 = 0 (MODEL.md section 2):
//!
//! ```text
//! z_{j+1} = z_j - h sigma(K_j^T y_j + b_j)
//! y_{j+1} = y_j + h sigma(K_j z_{j+1} + b_j)
//! ```
//!
//! It inverts exactly (section 3), so the adjoint rebuilds the states while it walks back.
use super::{Scratch, Step, affine, affine_t};
use crate::linalg::{add_outer, matvec, matvec_t};
use crate::real::Real;

/// (y, z) <- one Verlet step.
pub fn forward_step<T: Real>(st: &Step<T>, y: &mut [T], z: &mut [T], sc: &mut Scratch<T>) {
    affine_t(st.k, y, st.b, &mut sc.u);
    z.iter_mut().zip(&sc.u).for_each(|(zi, ci)| *zi -= st.h * st.act.f(*ci));
    affine(st.k, z, st.b, &mut sc.u);
    y.iter_mut().zip(&sc.u).for_each(|(yi, ui)| *yi += st.h * st.act.f(*ui));
}

/// (y_{j+1}, z_{j+1}) <- (y_j, z_j): the step run backwards in time (MODEL.md section 3).
pub fn reverse_step<T: Real>(st: &Step<T>, y: &mut [T], z: &mut [T], sc: &mut Scratch<T>) {
    affine(st.k, z, st.b, &mut sc.u);
    y.iter_mut().zip(&sc.u).for_each(|(yi, ui)| *yi -= st.h * st.act.f(*ui));
    affine_t(st.k, y, st.b, &mut sc.u);
    z.iter_mut().zip(&sc.u).for_each(|(zi, ci)| *zi += st.h * st.act.f(*ci));
}

/// The fused adjoint step of MODEL.md section 4. On entry (y, z) = (y_{j+1}, z_{j+1}) and
/// (ybar, zbar) are the adjoints after step j; on return (y, z) = (y_j, z_j), the adjoints are
/// those before step j, and the step's contributions are added to dk, db.
///
/// `stored`, when given, holds the exact (y_j, z_j) from the forward pass and replaces the
/// reverse-time reconstruction (stored-state gradients, or a restart point that bounds f32
/// drift).
#[allow(clippy::too_many_arguments)]
pub fn adjoint_step<T: Real>(
    st: &Step<T>,
    y: &mut [T],
    z: &mut [T],
    stored: Option<(&[T], &[T])>,
    ybar: &mut [T],
    zbar: &mut [T],
    dk: &mut [T],
    db: &mut [T],
    sc: &mut Scratch<T>,
) {
    let h = st.h;
    // Y update: u = K z_{j+1} + b, s = sigma'(u) * (h ybar).
    affine(st.k, z, st.b, &mut sc.u);
    for ((si, ui), yb) in sc.s.iter_mut().zip(&sc.u).zip(ybar.iter()) {
        *si = st.act.df(*ui) * h * *yb;
    }
    matvec_t(st.k, &sc.s, &mut sc.t);
    zbar.iter_mut().zip(&sc.t).for_each(|(a, b)| *a += *b);
    add_outer(dk, &sc.s, z);
    db.iter_mut().zip(&sc.s).for_each(|(a, b)| *a += *b);
    // Rebuild y_j = y_{j+1} - h sigma(u).
    match stored {
        Some((ys, _)) => y.copy_from_slice(ys),
        None => y.iter_mut().zip(&sc.u).for_each(|(yi, ui)| *yi -= h * st.act.f(*ui)),
    }
    // Z update: c = K^T y_j + b, t = sigma'(c) * (-h zbar).
    affine_t(st.k, y, st.b, &mut sc.u);
    for ((ti, ci), zb) in sc.t.iter_mut().zip(&sc.u).zip(zbar.iter()) {
        *ti = -(st.act.df(*ci) * h * *zb);
    }
    matvec(st.k, &sc.t, &mut sc.s);
    ybar.iter_mut().zip(&sc.s).for_each(|(a, b)| *a += *b);
    add_outer(dk, y, &sc.t);
    db.iter_mut().zip(&sc.t).for_each(|(a, b)| *a += *b);
    // Rebuild z_j = z_{j+1} + h sigma(c).
    match stored {
        Some((_, zs)) => z.copy_from_slice(zs),
        None => z.iter_mut().zip(&sc.u).for_each(|(zi, ci)| *zi += h * st.act.f(*ci)),
    }
}

/// Tangent-linear step at (y, z) = (y_j, z_j) with parameter perturbation `dst` (dK, db):
/// updates (dy, dz) to the derivative of (y_{j+1}, z_{j+1}); y and z are left unchanged.
pub fn tangent_step<T: Real>(
    st: &Step<T>,
    dst: &Step<T>,
    y: &[T],
    z: &[T],
    dy: &mut [T],
    dz: &mut [T],
    sc: &mut Scratch<T>,
) {
    let w = y.len();
    let h = st.h;
    // c = K^T y + b; dc = K^T dy + dK^T y + db
    affine_t(st.k, y, st.b, &mut sc.u);
    affine_t(dst.k, y, dst.b, &mut sc.s);
    matvec_t(st.k, dy, &mut sc.t);
    // z' = z - h sigma(c) (kept in v); dz' = dz - h sigma'(c) dc
    for i in 0..w {
        sc.v[i] = z[i] - h * st.act.f(sc.u[i]);
        dz[i] -= h * st.act.df(sc.u[i]) * (sc.t[i] + sc.s[i]);
    }
    // u = K z' + b; du = K dz' + dK z' + db; dy' = dy + h sigma'(u) du
    affine(st.k, &sc.v, st.b, &mut sc.u);
    affine(dst.k, &sc.v, dst.b, &mut sc.s);
    matvec(st.k, dz, &mut sc.t);
    for i in 0..w {
        dy[i] += h * st.act.df(sc.u[i]) * (sc.t[i] + sc.s[i]);
    }
}
