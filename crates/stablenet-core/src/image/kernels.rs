//! The inner kernels of the image network's CPU path: 3x3 convolutions over flat padded
//! planes, and activations over whole slices.
//!
//! Flat planes: with the input padded to [c][H+2][W+2] (row pitch P = W+2), output pixel
//! (i, j) sits at flat position t = i P + j, and tap (di, dj) of a 3x3 cross-correlation reads
//! the padded input plane at t + di P + dj: a constant offset per tap. So one (output channel,
//! input channel) pair is a single long pass over t in 0..L, L = (H-1) P + W, instead of H
//! short rows of W; the positions with j >= W are junk (they wrap into the border) and are
//! dropped (outputs) or zeroed (the weight gradient's g). The reads at t + 2P + 2 for t < L
//! end exactly at the end of the padded plane.
//!
//! Every element is computed by the same operations in the same order whatever the vector
//! width, the instruction set or the thread count (separate multiply and add, no FMA; the
//! weight gradient sums in [`LV`] fixed lanes combined by a fixed tree), so results are
//! bit-identical across machines for the convolutions. The f32 tanh uses the rational
//! approximation of `fast::simd` (max error 3.6e-7); f64 keeps the exact `tanh`.
use crate::config::Activation;
use crate::real::Real;
use std::any::TypeId;

/// Lanes of one chunk of a flat pass (and of the weight gradient's accumulators).
const LV: usize = 16;

/// Flat offsets of the 9 taps in a plane of row pitch `pw`.
#[inline(always)]
fn offsets(pw: usize) -> [usize; 9] {
    std::array::from_fn(|q| (q / 3) * pw + q % 3)
}

/// Length of the flat output range: (h - 1) (w + 2) + w.
#[inline(always)]
fn flat_len(h: usize, w: usize) -> usize {
    (h - 1) * (w + 2) + w
}

/// out[o] = sum over ci of the 9 taps k[o][ci][q] applied to the padded plane xp[ci]
/// (cross-correlation, `out` [co][h][w] overwritten).
pub(super) fn conv_flat<T: Real>(k: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { conv_flat_avx512(k, cin, co, h, w, xp, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { conv_flat_avx2(k, cin, co, h, w, xp, out) };
        }
    }
    conv_flat_impl(k, cin, co, h, w, xp, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
fn conv_flat_avx512<T: Real>(k: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], out: &mut [T]) {
    conv_flat_impl(k, cin, co, h, w, xp, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn conv_flat_avx2<T: Real>(k: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], out: &mut [T]) {
    conv_flat_impl(k, cin, co, h, w, xp, out)
}

#[inline(always)]
fn conv_flat_impl<T: Real>(k: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], out: &mut [T]) {
    let (pw, l) = (w + 2, flat_len(h, w));
    let pl = (h + 2) * pw;
    let offs = offsets(pw);
    assert!(k.len() >= co * cin * 9 && xp.len() >= cin * pl && out.len() >= co * h * w);
    let mut acc = vec![T::zero(); l];
    for o in 0..co {
        acc.fill(T::zero());
        for ci in 0..cin {
            let kk: &[T; 9] = k[(o * cin + ci) * 9..][..9].try_into().expect("9 taps");
            taps9(kk, &xp[ci * pl..][..pl], &offs, &mut acc);
        }
        for i in 0..h {
            out[(o * h + i) * w..][..w].copy_from_slice(&acc[i * pw..][..w]);
        }
    }
}

/// acc[t] += sum over q of k[q] plane[t + offs[q]], in the order q = 0..8, for t in 0..acc.len().
#[inline(always)]
fn taps9<T: Real>(k: &[T; 9], plane: &[T], offs: &[usize; 9], acc: &mut [T]) {
    let l = acc.len();
    if l < LV {
        for (t, a) in acc.iter_mut().enumerate() {
            let mut s = *a;
            for q in 0..9 {
                s += k[q] * plane[t + offs[q]];
            }
            *a = s;
        }
        return;
    }
    let main = l / LV * LV;
    for start in (0..main).step_by(LV) {
        let a: &mut [T; LV] = (&mut acc[start..start + LV]).try_into().expect("LV lanes");
        *a = chunk9(k, plane, offs, start, *a);
    }
    if main < l {
        // The last chunk is moved back to end at l; its lanes before `main` are already done.
        let start = l - LV;
        let s = chunk9(k, plane, offs, start, acc[start..l].try_into().expect("LV lanes"));
        // Element by element: a slice copy of this variable length is a memcpy call.
        #[allow(clippy::manual_memcpy)]
        for lane in main - start..LV {
            acc[start + lane] = s[lane];
        }
    }
}

/// One chunk of [`taps9`]: s[lane] + sum over q of k[q] plane[start + lane + offs[q]].
#[inline(always)]
fn chunk9<T: Real>(k: &[T; 9], plane: &[T], offs: &[usize; 9], start: usize, mut s: [T; LV]) -> [T; LV] {
    for q in 0..9 {
        let x: &[T; LV] = plane[start + offs[q]..][..LV].try_into().expect("LV lanes");
        let kq = k[q];
        for lane in 0..LV {
            s[lane] += kq * x[lane];
        }
    }
    s
}

/// dk[o][ci][q] += sum over the pixels of g[o] times the padded plane xp[ci] at tap q
/// (`g` [co][h][w]).
pub(super) fn wgrad_flat<T: Real>(g: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], dk: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { wgrad_flat_avx512(g, cin, co, h, w, xp, dk) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { wgrad_flat_avx2(g, cin, co, h, w, xp, dk) };
        }
    }
    wgrad_flat_impl(g, cin, co, h, w, xp, dk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
fn wgrad_flat_avx512<T: Real>(g: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], dk: &mut [T]) {
    wgrad_flat_impl(g, cin, co, h, w, xp, dk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn wgrad_flat_avx2<T: Real>(g: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], dk: &mut [T]) {
    wgrad_flat_impl(g, cin, co, h, w, xp, dk)
}

#[inline(always)]
fn wgrad_flat_impl<T: Real>(g: &[T], cin: usize, co: usize, h: usize, w: usize, xp: &[T], dk: &mut [T]) {
    let (pw, l) = (w + 2, flat_len(h, w));
    let pl = (h + 2) * pw;
    let offs = offsets(pw);
    assert!(g.len() >= co * h * w && xp.len() >= cin * pl && dk.len() >= co * cin * 9);
    // g in the flat layout, junk columns zero.
    let mut gf = vec![T::zero(); co * l];
    for o in 0..co {
        for i in 0..h {
            gf[o * l + i * pw..][..w].copy_from_slice(&g[(o * h + i) * w..][..w]);
        }
    }
    for o in 0..co {
        let go = &gf[o * l..][..l];
        for ci in 0..cin {
            let sums = dot9(go, &xp[ci * pl..][..pl], &offs);
            for (d, s) in dk[(o * cin + ci) * 9..][..9].iter_mut().zip(sums) {
                *d += s;
            }
        }
    }
}

/// The 9 sums over t of g[t] plane[t + offs[q]], each in LV lanes (t mod LV, the last chunk
/// aligned to the end) combined by a fixed halving tree.
#[inline(always)]
fn dot9<T: Real>(g: &[T], plane: &[T], offs: &[usize; 9]) -> [T; 9] {
    let l = g.len();
    let mut acc = [[T::zero(); LV]; 9];
    if l < LV {
        for (t, &gv) in g.iter().enumerate() {
            for q in 0..9 {
                acc[q][t] += gv * plane[t + offs[q]];
            }
        }
    } else {
        let mut t0 = 0;
        while t0 < l {
            let start = t0.min(l - LV);
            let mut gv: [T; LV] = g[start..start + LV].try_into().expect("LV lanes");
            // Lanes before t0 were counted by the previous chunk.
            for v in &mut gv[..t0 - start] {
                *v = T::zero();
            }
            for q in 0..9 {
                let x: &[T; LV] = plane[start + offs[q]..][..LV].try_into().expect("LV lanes");
                for lane in 0..LV {
                    acc[q][lane] += gv[lane] * x[lane];
                }
            }
            t0 += LV;
        }
    }
    acc.map(|mut a| {
        let mut width = LV;
        while width > 1 {
            width /= 2;
            for lane in 0..width {
                a[lane] += a[lane + width];
            }
        }
        a[0]
    })
}

/// Whether `T` is f32 (the fast tanh applies).
#[inline(always)]
fn is_f32<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
}

/// u <- sigma(u) over a slice: the fast rational tanh for f32, the exact one otherwise.
pub(super) fn act_inplace<T: Real>(act: Activation, u: &mut [T]) {
    if act == Activation::Tanh && is_f32::<T>() {
        // SAFETY: T is f32 (checked above), so the slice is a slice of f32.
        let u32 = unsafe { &mut *(u as *mut [T] as *mut [f32]) };
        tanh_f32(u32);
        return;
    }
    for v in u {
        *v = act.f(*v);
    }
}

/// sigma'(u) from t = sigma(u): 1 - t^2 for tanh, 1 where t > 0 (which is u > 0) for relu.
#[inline(always)]
pub(super) fn dsig_from_value<T: Real>(act: Activation, t: T) -> T {
    match act {
        Activation::Tanh => T::one() - t * t,
        Activation::Relu => {
            if t > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
    }
}

/// tanh over an f32 slice with `fast::simd::tanh`, on the widest instruction set the CPU has.
pub(super) fn tanh_f32(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::fast::simd::{Avx2, Avx512};
        if let Some(isa) = Avx512::new() {
            // SAFETY: the token exists, so the CPU has these features.
            return unsafe { tanh_avx512(isa, x) };
        }
        if let Some(isa) = Avx2::new() {
            // SAFETY: as above.
            return unsafe { tanh_avx2(isa, x) };
        }
    }
    tanh_rows(crate::fast::simd::Portable, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
fn tanh_avx512(isa: crate::fast::simd::Avx512, x: &mut [f32]) {
    tanh_rows(isa, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tanh_avx2(isa: crate::fast::simd::Avx2, x: &mut [f32]) {
    tanh_rows(isa, x)
}

#[inline(always)]
fn tanh_rows<X: crate::fast::simd::Isa>(isa: X, x: &mut [f32]) {
    use crate::fast::simd::{Lanes, V, lanes, lanes_mut, tanh};
    let mut rows = x.chunks_exact_mut(V);
    for row in &mut rows {
        let v = tanh(isa, isa.load(lanes(row)));
        isa.store(lanes_mut(row), v);
    }
    let rest = rows.into_remainder();
    if !rest.is_empty() {
        let mut buf: Lanes = [0.0; V];
        buf[..rest.len()].copy_from_slice(rest);
        let v = tanh(isa, isa.load(&buf));
        isa.store(&mut buf, v);
        rest.copy_from_slice(&buf[..rest.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each element of the flat kernels by the definition, over shapes whose flat length is
    /// below, at and above one chunk (including a ragged last chunk): bit-exact sums are not
    /// expected (the order differs), 1e-12 relative in f64.
    #[test]
    fn flat_kernels_match_the_definition() {
        let mut rng = crate::rng::Rng::new(11);
        for (cin, co, h, w) in [(1, 1, 1, 1), (2, 3, 2, 3), (1, 2, 3, 4), (3, 2, 5, 5), (2, 2, 7, 7), (1, 3, 6, 9)] {
            let (pw, pl) = (w + 2, (h + 2) * (w + 2));
            let k: Vec<f64> = (0..co * cin * 9).map(|_| rng.normal()).collect();
            let mut xp = vec![0.0; cin * pl];
            for c in 0..cin {
                for i in 0..h {
                    for j in 0..w {
                        xp[c * pl + (i + 1) * pw + j + 1] = rng.normal();
                    }
                }
            }
            let g: Vec<f64> = (0..co * h * w).map(|_| rng.normal()).collect();
            let mut out = vec![0.0; co * h * w];
            conv_flat(&k, cin, co, h, w, &xp, &mut out);
            let mut dk = vec![0.0; k.len()];
            wgrad_flat(&g, cin, co, h, w, &xp, &mut dk);
            let mut want_dk = vec![0.0; k.len()];
            for o in 0..co {
                for i in 0..h {
                    for j in 0..w {
                        let mut want = 0.0;
                        for c in 0..cin {
                            for q in 0..9 {
                                let x = xp[c * pl + (i + q / 3) * pw + j + q % 3];
                                want += k[(o * cin + c) * 9 + q] * x;
                                want_dk[(o * cin + c) * 9 + q] += g[(o * h + i) * w + j] * x;
                            }
                        }
                        let got = out[(o * h + i) * w + j];
                        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} vs {want}");
                    }
                }
            }
            for (a, b) in dk.iter().zip(&want_dk) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    /// The f32 slice tanh against the f64 one: within 1e-6 (the approximation is 3.6e-7),
    /// any slice length (the ragged tail goes through the same kernel).
    #[test]
    fn f32_tanh_slice_is_close_to_f64() {
        for n in [1usize, 15, 16, 17, 100] {
            let u64v: Vec<f64> = (0..n).map(|i| (i as f64 - 50.0) * 0.173).collect();
            let mut u32v: Vec<f32> = u64v.iter().map(|&v| v as f32).collect();
            act_inplace(Activation::Tanh, &mut u32v);
            for (&a, &u) in u32v.iter().zip(&u64v) {
                let want = (u as f32 as f64).tanh();
                assert!((a as f64 - want).abs() <= 1e-6, "tanh({u}) = {a}, want {want}");
            }
            let mut e = u64v.clone();
            act_inplace(Activation::Tanh, &mut e);
            assert!(e.iter().zip(&u64v).all(|(&a, &u)| a == u.tanh()), "f64 stays exact");
        }
    }

    /// The f32 path of a whole stage (fast tanh, f32 sums) against the f64 reference, forward
    /// states and every adjoint output, for each integrator: within 2e-5 of the largest value
    /// (f32 rounding, about 1e-7 per operation, and the tanh error 3.6e-7, through a few
    /// dozen operations per element).
    #[test]
    fn f32_stage_is_close_to_the_f64_reference() {
        use super::super::stage::{Scratch, Stage};
        use crate::config::Integrator;
        let sh = super::super::Shape::new(3, 5, 6);
        let n = 3;
        let mut rng = crate::rng::Rng::new(12);
        let mut randn = |len: usize, std: f64| -> Vec<f64> { (0..len).map(|_| std * rng.normal()).collect() };
        let k = randn(n * sh.c * sh.c * 9, 1.0 / (9.0 * sh.c as f64).sqrt());
        let b = randn(n * sh.c, 0.3);
        let y0 = randn(sh.len(), 1.0);
        let ybar0 = randn(sh.len(), 1.0);
        fn run<T: Real>(
            integrator: Integrator,
            sh: super::super::Shape,
            k: &[f64],
            b: &[f64],
            y0: &[f64],
            ybar0: &[f64],
        ) -> Vec<Vec<f64>> {
            let cast = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
            let (k, b) = (cast(k), cast(b));
            let stage =
                Stage { integrator, act: Activation::Tanh, shape: sh, h: T::c(0.4), gamma: T::c(0.1), k: &k, b: &b };
            let n = stage.steps();
            let mut sc = Scratch::new(sh.len(), sh.padded_len());
            let (mut y, mut z) = (cast(y0), vec![T::zero(); sh.len()]);
            let mut stored = vec![T::zero(); n * sh.len()];
            let keep = matches!(integrator, Integrator::Resnet | Integrator::Antisym);
            stage.forward(&mut y, &mut z, keep.then_some(&mut stored[..]), &mut sc);
            let out_y = y.clone();
            let (mut ybar, mut abar) = (cast(ybar0), vec![T::zero(); sh.len()]);
            let (mut dk, mut db) = (vec![T::zero(); k.len()], vec![T::zero(); b.len()]);
            stage.adjoint(&mut y, &mut z, keep.then_some(&stored[..]), &mut ybar, &mut abar, &mut dk, &mut db, &mut sc);
            [out_y, ybar, dk, db].iter().map(|v| v.iter().map(|x| x.f64()).collect()).collect()
        }
        for integrator in [Integrator::Resnet, Integrator::Antisym, Integrator::Hamiltonian, Integrator::Leapfrog] {
            let want = run::<f64>(integrator, sh, &k, &b, &y0, &ybar0);
            let got = run::<f32>(integrator, sh, &k, &b, &y0, &ybar0);
            for (name, (g, w)) in ["y_N", "ybar", "dk", "db"].iter().zip(got.iter().zip(&want)) {
                let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let err = g.iter().zip(w).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= 2e-5 * scale, "{integrator:?} {name}: f32 off by {err:.3e} (scale {scale:.3e})");
            }
        }
    }
}
