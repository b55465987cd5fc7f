//! Convolution operators of the image network (docs/IMAGES.md), one example at a time.
//!
//! An activation is [c][H][W]. K is a 3x3 kernel [c_out][c_in][3][3] (PyTorch `conv2d`
//! layout), applied as a cross-correlation with zero "same" padding; `conv3x3_t` is its exact
//! adjoint (PyTorch `conv_transpose2d(padding=1)`). These are the CPU twins of `conv.wgsl`.
//!
//! Every 3x3 routine works on a zero-padded copy ([c][H+2][W+2], see [`pad`]), read as flat
//! planes so each tap is one long contiguous pass (`image::kernels`).
use super::kernels::{conv_flat, wgrad_flat};
use crate::real::Real;

/// Image sizes: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    pub fn len(self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
    pub fn pixels(self) -> usize {
        self.h * self.w
    }
    pub fn padded_len(self) -> usize {
        self.c * (self.h + 2) * (self.w + 2)
    }
}

/// Copies `x` ([c][H][W]) into `out` ([c][H+2][W+2]) with a zero border.
pub fn pad<T: Real>(s: Shape, x: &[T], out: &mut [T]) {
    let (h, w, pw) = (s.h, s.w, s.w + 2);
    debug_assert_eq!(x.len(), s.len());
    debug_assert_eq!(out.len(), s.padded_len());
    out.fill(T::zero());
    for ch in 0..s.c {
        for i in 0..h {
            let src = &x[(ch * h + i) * w..][..w];
            out[(ch * (h + 2) + i + 1) * pw + 1..][..w].copy_from_slice(src);
        }
    }
}

/// out = K x (c_out = c_in = s.c for the stage steps; `c_out` channels in general), with `xp`
/// the padded input. `out` is overwritten.
pub fn conv3x3<T: Real>(k: &[T], s: Shape, c_out: usize, xp: &[T], out: &mut [T]) {
    debug_assert_eq!(k.len(), c_out * s.c * 9);
    debug_assert_eq!(xp.len(), s.padded_len());
    debug_assert_eq!(out.len(), c_out * s.h * s.w);
    conv_flat(k, s.c, c_out, s.h, s.w, xp, out);
}

/// out = K^T s_out: the adjoint of [`conv3x3`] (`sp` the padded [c_out][H+2][W+2] input,
/// `out` [s.c][H][W] overwritten). K^T s [c][i][j] = sum K[o][c][di][dj] s[o][i+1-di][j+1-dj],
/// which is the cross-correlation of the padded s with the flipped kernel
/// K'[c][o][2-di][2-dj] = K[o][c][di][dj].
pub fn conv3x3_t<T: Real>(k: &[T], s: Shape, c_out: usize, sp: &[T], out: &mut [T]) {
    debug_assert_eq!(k.len(), c_out * s.c * 9);
    debug_assert_eq!(sp.len(), c_out * (s.h + 2) * (s.w + 2));
    debug_assert_eq!(out.len(), s.len());
    let mut kt = vec![T::zero(); k.len()];
    for o in 0..c_out {
        for c in 0..s.c {
            let (src, dst) = (&k[(o * s.c + c) * 9..][..9], &mut kt[(c * c_out + o) * 9..][..9]);
            for q in 0..9 {
                dst[q] = src[8 - q];
            }
        }
    }
    conv_flat(&kt, c_out, s.c, s.h, s.w, sp, out);
}

/// dk += the gradient of <g, K x> with respect to K: dk[o][c][di][dj] += sum over pixels of
/// g[o][i][j] xp[c][i+di][j+dj] (`g` [c_out][H][W], `xp` the padded [s.c][H+2][W+2] input).
pub fn conv3x3_wgrad<T: Real>(g: &[T], s: Shape, c_out: usize, xp: &[T], dk: &mut [T]) {
    debug_assert_eq!(dk.len(), c_out * s.c * 9);
    debug_assert_eq!(xp.len(), s.padded_len());
    debug_assert_eq!(g.len(), c_out * s.h * s.w);
    wgrad_flat(g, s.c, c_out, s.h, s.w, xp, dk);
}

/// Adds the per-channel bias: y[c][.] += b[c].
pub fn add_bias<T: Real>(b: &[T], pixels: usize, y: &mut [T]) {
    for (row, &bc) in y.chunks_exact_mut(pixels).zip(b) {
        for v in row {
            *v += bc;
        }
    }
}

/// db[c] += sum over the pixels of g[c][.].
pub fn bias_grad<T: Real>(g: &[T], pixels: usize, db: &mut [T]) {
    for (row, d) in g.chunks_exact(pixels).zip(db) {
        *d += row.iter().copied().sum::<T>();
    }
}

/// out = W x for a 1x1 convolution W [c_out][c_in] (`out` [c_out][pixels], overwritten).
pub fn conv1x1<T: Real>(wt: &[T], c_in: usize, c_out: usize, pixels: usize, x: &[T], out: &mut [T]) {
    out.fill(T::zero());
    for o in 0..c_out {
        let row = &mut out[o * pixels..][..pixels];
        for ci in 0..c_in {
            let wv = wt[o * c_in + ci];
            for (r, &v) in row.iter_mut().zip(&x[ci * pixels..][..pixels]) {
                *r += wv * v;
            }
        }
    }
}

/// out = W^T g for a 1x1 convolution (`out` [c_in][pixels], overwritten).
pub fn conv1x1_t<T: Real>(wt: &[T], c_in: usize, c_out: usize, pixels: usize, g: &[T], out: &mut [T]) {
    out.fill(T::zero());
    for ci in 0..c_in {
        let row = &mut out[ci * pixels..][..pixels];
        for o in 0..c_out {
            let wv = wt[o * c_in + ci];
            for (r, &v) in row.iter_mut().zip(&g[o * pixels..][..pixels]) {
                *r += wv * v;
            }
        }
    }
}

/// dw[o][c] += sum over pixels of g[o][.] x[c][.].
pub fn conv1x1_wgrad<T: Real>(g: &[T], c_in: usize, c_out: usize, pixels: usize, x: &[T], dw: &mut [T]) {
    for o in 0..c_out {
        let grow = &g[o * pixels..][..pixels];
        for ci in 0..c_in {
            dw[o * c_in + ci] += crate::real::dot(grow, &x[ci * pixels..][..pixels]);
        }
    }
}

/// 2x2 average pooling of [c][H][W] (H, W even) into [c][H/2][W/2].
pub fn avgpool2<T: Real>(s: Shape, x: &[T], out: &mut [T]) {
    let (ho, wo) = (s.h / 2, s.w / 2);
    let q = T::c(0.25);
    for ch in 0..s.c {
        for i in 0..ho {
            for j in 0..wo {
                let at = |di: usize, dj: usize| x[(ch * s.h + 2 * i + di) * s.w + 2 * j + dj];
                out[(ch * ho + i) * wo + j] = q * (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1));
            }
        }
    }
}

/// The adjoint of [`avgpool2`]: out[c][i][j] = g[c][i/2][j/2] / 4 (`s` the unpooled shape).
pub fn avgpool2_t<T: Real>(s: Shape, g: &[T], out: &mut [T]) {
    let (ho, wo) = (s.h / 2, s.w / 2);
    let q = T::c(0.25);
    for ch in 0..s.c {
        for i in 0..s.h {
            for j in 0..s.w {
                out[(ch * s.h + i) * s.w + j] = q * g[(ch * ho + i / 2) * wo + j / 2];
            }
        }
    }
}
