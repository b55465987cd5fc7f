//! One stage of stable steps with convolution operators (docs/IMAGES.md; MODEL.md sections
//! 2-4 with K y = conv3x3(y), K^T s = its adjoint, per-channel biases). One example at a time;
//! the CPU twins of the image kernels of `conv.wgsl`.
use super::conv::{Shape, add_bias, bias_grad, conv3x3, conv3x3_t, conv3x3_wgrad, pad};
use super::kernels::{act_inplace, dsig_from_value};
use crate::config::{Activation, Integrator};
use crate::real::Real;

/// Scratch of one worker, sized for the largest stage; reused, never reallocated.
pub struct Scratch<T> {
    p1: Vec<T>,
    p2: Vec<T>,
    u: Vec<T>,
    s: Vec<T>,
    t: Vec<T>,
}

impl<T: Real> Scratch<T> {
    pub fn new(max_len: usize, max_padded: usize) -> Self {
        let z = |n| vec![T::zero(); n];
        Scratch { p1: z(max_padded), p2: z(max_padded), u: z(max_len), s: z(max_len), t: z(max_len) }
    }
}

/// The fixed data of one stage: its shape, step size and parameters (N kernels, N biases).
pub struct Stage<'a, T> {
    pub integrator: Integrator,
    pub act: Activation,
    pub shape: Shape,
    pub h: T,
    pub gamma: T,
    pub k: &'a [T],
    pub b: &'a [T],
}

/// Views of the scratch at this stage's sizes.
macro_rules! views {
    ($sc:expr, $sh:expr) => {{
        let (n, np) = ($sh.len(), $sh.padded_len());
        (&mut $sc.p1[..np], &mut $sc.p2[..np], &mut $sc.u[..n], &mut $sc.s[..n], &mut $sc.t[..n])
    }};
}

impl<T: Real> Stage<'_, T> {
    pub fn steps(&self) -> usize {
        self.b.len() / self.shape.c
    }

    fn kj(&self, j: usize) -> &[T] {
        let len = self.shape.c * self.shape.c * 9;
        &self.k[j * len..][..len]
    }

    fn bj(&self, j: usize) -> &[T] {
        &self.b[j * self.shape.c..][..self.shape.c]
    }

    /// u = M y + b with M = K (resnet, leapfrog) or (K - K^T - gamma I) / 2 (antisym);
    /// leaves y padded in `py`.
    fn operator(&self, j: usize, y: &[T], py: &mut [T], u: &mut [T], tmp: &mut [T]) {
        let (sh, c) = (self.shape, self.shape.c);
        pad(sh, y, py);
        conv3x3(self.kj(j), sh, c, py, u);
        if self.integrator == Integrator::Antisym {
            conv3x3_t(self.kj(j), sh, c, py, tmp);
            let half = T::c(0.5);
            for ((u, &t), &y) in u.iter_mut().zip(tmp.iter()).zip(y) {
                *u = half * (*u - t - self.gamma * y);
            }
        }
        add_bias(self.bj(j), sh.pixels(), u);
    }

    /// Runs every step forward. `y` is the state; `z` is the second state (hamiltonian: z,
    /// starting at 0; leapfrog: y_{j-1}, starting at y_0) and unused otherwise. `stored`
    /// receives y_0 .. y_{N-1} when given (resnet, antisym need them for the gradient).
    pub fn forward(&self, y: &mut [T], z: &mut [T], mut stored: Option<&mut [T]>, sc: &mut Scratch<T>) {
        let (sh, c, h) = (self.shape, self.shape.c, self.h);
        let (p1, _, u, _, t) = views!(sc, sh);
        match self.integrator {
            Integrator::Hamiltonian => z.fill(T::zero()),
            Integrator::Leapfrog => z.copy_from_slice(y),
            _ => {}
        }
        for j in 0..self.steps() {
            if let Some(st) = stored.as_deref_mut() {
                st[j * sh.len()..][..sh.len()].copy_from_slice(y);
            }
            match self.integrator {
                Integrator::Resnet | Integrator::Antisym => {
                    self.operator(j, y, p1, u, t);
                    act_inplace(self.act, u);
                    for (y, &u) in y.iter_mut().zip(u.iter()) {
                        *y += h * u;
                    }
                }
                Integrator::Hamiltonian => {
                    // z -= h sigma(K^T y + b); y += h sigma(K z + b)
                    pad(sh, y, p1);
                    conv3x3_t(self.kj(j), sh, c, p1, u);
                    add_bias(self.bj(j), sh.pixels(), u);
                    act_inplace(self.act, u);
                    for (z, &u) in z.iter_mut().zip(u.iter()) {
                        *z -= h * u;
                    }
                    pad(sh, z, p1);
                    conv3x3(self.kj(j), sh, c, p1, u);
                    add_bias(self.bj(j), sh.pixels(), u);
                    act_inplace(self.act, u);
                    for (y, &u) in y.iter_mut().zip(u.iter()) {
                        *y += h * u;
                    }
                }
                Integrator::Leapfrog => {
                    // y_{j+1} = 2 y_j - y_{j-1} - h^2 K^T sigma(K y_j + b), written over y_{j-1}.
                    self.leapfrog_force(j, y, p1, u, t);
                    let h2 = h * h;
                    for ((zp, &yj), &f) in z.iter_mut().zip(y.iter()).zip(t.iter()) {
                        *zp = yj + yj - *zp - h2 * f;
                    }
                    y.swap_with_slice(z);
                }
            }
        }
    }

    /// t = K^T sigma(K y + b); u is left holding sigma(K y + b).
    fn leapfrog_force(&self, j: usize, y: &[T], p: &mut [T], u: &mut [T], t: &mut [T]) {
        let (sh, c) = (self.shape, self.shape.c);
        pad(sh, y, p);
        conv3x3(self.kj(j), sh, c, p, u);
        add_bias(self.bj(j), sh.pixels(), u);
        act_inplace(self.act, u);
        pad(sh, u, p);
        conv3x3_t(self.kj(j), sh, c, p, t);
    }

    /// The adjoint pass of the whole stage: on entry `y`, `z` hold the final state (as left by
    /// [`Stage::forward`]; `stored` the states it stored) and `ybar` dLoss/dy_N; on exit `ybar`
    /// is dLoss/dy_0, and dk, db (this stage's slices) have the gradients added. Hamiltonian
    /// and leapfrog rebuild the states in reverse time (MODEL.md section 3); `y`, `z` are
    /// overwritten. `abar` is a second adjoint buffer (zbar, or leapfrog's a_j).
    #[allow(clippy::too_many_arguments)]
    pub fn adjoint(
        &self,
        y: &mut [T],
        z: &mut [T],
        stored: Option<&[T]>,
        ybar: &mut [T],
        abar: &mut [T],
        dk: &mut [T],
        db: &mut [T],
        sc: &mut Scratch<T>,
    ) {
        let (sh, c, h, n) = (self.shape, self.shape.c, self.h, self.steps());
        let kl = c * c * 9;
        let (p1, p2, u, s, t) = views!(sc, sh);
        let (one, half) = (T::one(), T::c(0.5));
        match self.integrator {
            Integrator::Resnet | Integrator::Antisym => {
                let stored = stored.expect("resnet/antisym keep their states");
                for j in (0..n).rev() {
                    let yj = &stored[j * sh.len()..][..sh.len()];
                    let (dkj, dbj) = (&mut dk[j * kl..][..kl], &mut db[j * c..][..c]);
                    self.operator(j, yj, p1, u, t);
                    act_inplace(self.act, u);
                    for ((s, &u), &yb) in s.iter_mut().zip(u.iter()).zip(ybar.iter()) {
                        *s = h * dsig_from_value(self.act, u) * yb;
                    }
                    bias_grad(s, sh.pixels(), dbj);
                    if self.integrator == Integrator::Resnet {
                        conv3x3_wgrad(s, sh, c, p1, dkj);
                        pad(sh, s, p2);
                        conv3x3_t(self.kj(j), sh, c, p2, t);
                        for (yb, &t) in ybar.iter_mut().zip(t.iter()) {
                            *yb += t;
                        }
                    } else {
                        // M^T s = (K^T s - K s - gamma s) / 2;  dK = (dK(s, y) - dK(y, s)) / 2.
                        for s in s.iter_mut() {
                            *s *= half;
                        }
                        conv3x3_wgrad(s, sh, c, p1, dkj);
                        pad(sh, s, p2);
                        for (t, &y) in t.iter_mut().zip(yj) {
                            *t = -y;
                        }
                        conv3x3_wgrad(t, sh, c, p2, dkj);
                        conv3x3_t(self.kj(j), sh, c, p2, t);
                        conv3x3(self.kj(j), sh, c, p2, u);
                        for (((yb, &t), &u), &s) in ybar.iter_mut().zip(t.iter()).zip(u.iter()).zip(s.iter()) {
                            *yb += t - u - self.gamma * s;
                        }
                    }
                }
            }
            Integrator::Hamiltonian => {
                let zbar = abar;
                zbar.fill(T::zero());
                for j in (0..n).rev() {
                    let (kj, (dkj, dbj)) = (self.kj(j), (&mut dk[j * kl..][..kl], &mut db[j * c..][..c]));
                    // u = K z + b; s = sigma'(u) h ybar; zbar += K^T s; dK += s z^T; y -= h sigma(u)
                    pad(sh, z, p1);
                    conv3x3(kj, sh, c, p1, u);
                    add_bias(self.bj(j), sh.pixels(), u);
                    act_inplace(self.act, u);
                    for (((s, &u), &yb), y) in s.iter_mut().zip(u.iter()).zip(ybar.iter()).zip(y.iter_mut()) {
                        *s = dsig_from_value(self.act, u) * h * yb;
                        *y -= h * u;
                    }
                    conv3x3_wgrad(s, sh, c, p1, dkj);
                    bias_grad(s, sh.pixels(), dbj);
                    pad(sh, s, p2);
                    conv3x3_t(kj, sh, c, p2, t);
                    for (zb, &t) in zbar.iter_mut().zip(t.iter()) {
                        *zb += t;
                    }
                    // c = K^T y + b; t = sigma'(c) (-h zbar); ybar += K t; dK += y t^T; z += h sigma(c)
                    pad(sh, y, p1);
                    conv3x3_t(kj, sh, c, p1, u);
                    add_bias(self.bj(j), sh.pixels(), u);
                    act_inplace(self.act, u);
                    for (((t, &u), &zb), z) in t.iter_mut().zip(u.iter()).zip(zbar.iter()).zip(z.iter_mut()) {
                        *t = -(dsig_from_value(self.act, u) * h * zb);
                        *z += h * u;
                    }
                    bias_grad(t, sh.pixels(), dbj);
                    pad(sh, t, p2);
                    conv3x3_wgrad(y, sh, c, p2, dkj);
                    conv3x3(kj, sh, c, p2, s);
                    for (yb, &s) in ybar.iter_mut().zip(s.iter()) {
                        *yb += s;
                    }
                }
            }
            Integrator::Leapfrog => {
                // On entry y = y_N, z = y_{N-1}; walk with (yj, yn) = (y_j, y_{j+1}), accumulators
                // (a1, a0) = (a_{j+1}, a_j) (MODEL.md section 4), starting a_N = ybar.
                let (mut yj, mut yn) = (z, y);
                let (mut a1, mut a0) = (ybar, abar);
                a0.fill(T::zero());
                let h2 = h * h;
                for j in (0..n).rev() {
                    let (kj, (dkj, dbj)) = (self.kj(j), (&mut dk[j * kl..][..kl], &mut db[j * c..][..c]));
                    // v = h^2 a_{j+1} (padded in p2); u = K y_j + b (y_j padded in p1); g = sigma'(u) K v
                    pad(sh, yj, p1);
                    conv3x3(kj, sh, c, p1, u);
                    add_bias(self.bj(j), sh.pixels(), u);
                    for (s, &a) in s.iter_mut().zip(a1.iter()) {
                        *s = h2 * a;
                    }
                    pad(sh, s, p2);
                    conv3x3(kj, sh, c, p2, t);
                    // s = -g, u = -sigma(u): dK += -(sigma(u) v^T + g y^T), db += -g.
                    act_inplace(self.act, u);
                    for ((s, &t), u) in s.iter_mut().zip(t.iter()).zip(u.iter_mut()) {
                        *s = -(dsig_from_value(self.act, *u) * t);
                        *u = -*u;
                    }
                    conv3x3_wgrad(u, sh, c, p2, dkj);
                    conv3x3_wgrad(s, sh, c, p1, dkj);
                    bias_grad(s, sh.pixels(), dbj);
                    // a_j += 2 a_{j+1} - K^T g  (a_{j+1} - K^T g for j = 0)
                    pad(sh, s, p2);
                    conv3x3_t(kj, sh, c, p2, t);
                    let two = if j == 0 { one } else { one + one };
                    for ((a0, &a1), &t) in a0.iter_mut().zip(a1.iter()).zip(t.iter()) {
                        *a0 += two * a1 + t;
                    }
                    if j == 0 {
                        break;
                    }
                    // y_{j-1} = 2 y_j - y_{j+1} - h^2 K^T sigma(u), written over y_{j+1}.
                    pad(sh, u, p2);
                    conv3x3_t(kj, sh, c, p2, t);
                    for ((yn, &yj), &t) in yn.iter_mut().zip(yj.iter()).zip(t.iter()) {
                        *yn = yj + yj - *yn + h2 * t;
                    }
                    std::mem::swap(&mut yj, &mut yn);
                    // a_{j-1} = -a_{j+1}, written over a_{j+1}; then (a1, a0) = (a_j, a_{j-1}).
                    for a in a1.iter_mut() {
                        *a = -*a;
                    }
                    std::mem::swap(&mut a1, &mut a0);
                }
                // After j = 0 the total dLoss/dy_0 is in a0; the caller reads it from ybar.
                if n % 2 == 1 {
                    // n - 1 swaps, an even number: a0 is still the caller's abar.
                    a1.copy_from_slice(a0);
                }
            }
        }
    }
}
