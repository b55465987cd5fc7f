//! One tile (G blocks of V examples) through the whole network and back (MODEL.md sections
//! 1-4), adding its share of the gradient into the [`Sink`] phase by phase.
//!
//! Every state is a tile array of G blocks, each `[w][V]` (row i of block g at
//! `(g w + i) V`). Per step the blocks are visited one after the other: for each, a few fused
//! passes (product, bias, activation, update) while the block's rows stay in L1; the step's
//! batch reductions (dK_j, db_j) then run once over the whole tile.
// Index loops mirror the formulas of MODEL.md (several arrays per index); keep them.
#![allow(clippy::needless_range_loop)]
use super::kernels::{Outer, mm, mm2, reduce, reduce_t, row_sums, transpose};
use super::simd::{Act, Isa, Lanes, V, exp};
use super::sink::Sink;
use crate::config::Integrator;

/// Everything a tile reads: shapes, the batch, and the packed parameters of this call.
pub(crate) struct Ctx<'a> {
    pub integrator: Integrator,
    pub d: usize,
    pub w: usize,
    pub steps: usize,
    pub c: usize,
    pub h: f32,
    /// Blocks per tile.
    pub g: usize,
    pub x: &'a [f32],
    pub labels: &'a [u32],
    pub inv_n: f32,
    /// Packed K_in (w x d), then per step the packed M_j and M_j^T (w x w each, `kp` apart).
    pub kin: &'a [f32],
    pub k: &'a [f32],
    pub kt: &'a [f32],
    pub kp: usize,
    /// Packed W (C x w) and W^T (w x C).
    pub wc: &'a [f32],
    pub wct: &'a [f32],
    pub b_in: &'a [f32],
    pub b: &'a [f32],
    pub mu: &'a [f32],
}

impl Ctx<'_> {
    fn step(&self, j: usize) -> (&[f32], &[f32], &[f32]) {
        let (kp, w) = (self.kp, self.w);
        (&self.k[j * kp..(j + 1) * kp], &self.kt[j * kp..(j + 1) * kp], &self.b[j * w..(j + 1) * w])
    }
}

/// Per-thread tile buffers, allocated once per workspace.
pub(crate) struct Scratch {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    /// Examples of the current tile that are real (the rest is zero padding).
    pub valid: usize,
    pub y0: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
    pub zn: Vec<f32>,
    pub yb: Vec<f32>,
    pub zb: Vec<f32>,
    pub s: Vec<f32>,
    pub t: Vec<f32>,
    pub a2: Vec<f32>,
    pub logits: Vec<f32>,
    /// resnet/antisym: y_0 .. y_N of the tile.
    pub store: Vec<f32>,
    pub tr: Trans,
}

/// Buffers of the transposed step reductions (w >= 16; empty otherwise): operands with one
/// row of wp = ceil(w / 16) 16 values per example, and the tile's dK_j (w x wp).
pub(crate) struct Trans {
    wp: usize,
    qt: Vec<f32>,
    st: Vec<f32>,
    dkp: Vec<f32>,
}

impl Trans {
    fn new(w: usize, examples: usize) -> Self {
        let wp = if w >= 16 { w.div_ceil(V) * V } else { 0 };
        Trans { wp, qt: vec![0.0; examples * wp], st: vec![0.0; examples * wp], dkp: vec![0.0; w * wp] }
    }
}

/// dK_j += sign (P Q^T + R S^T) over the tile (MODEL.md section 4: dK_j, a batch sum), for
/// tile arrays of w rows per block: sums across lanes for narrow states, a product with
/// transposed Q and S for wide ones.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_grad<X: Isa>(
    isa: X,
    w: usize,
    tr: &mut Trans,
    p: &[f32],
    q: &[f32],
    rs: Option<(&[f32], &[f32])>,
    dk: &mut [f32],
    negate: bool,
) {
    let wp = tr.wp;
    if wp == 0 {
        reduce(isa, &Outer { p, q, rs, mi: w, mk: w }, dk, negate);
        return;
    }
    transpose(q, w, &mut tr.qt, wp);
    match rs {
        Some((r, s)) => {
            transpose(s, w, &mut tr.st, wp);
            reduce_t(isa, p, &tr.qt, Some((r, &tr.st)), w, wp, &mut tr.dkp);
        }
        None => reduce_t(isa, p, &tr.qt, None, w, wp, &mut tr.dkp),
    }
    for (d, s) in dk.chunks_exact_mut(w).zip(tr.dkp.chunks_exact(wp)) {
        for (d, s) in d.iter_mut().zip(s) {
            if negate {
                *d -= *s;
            } else {
                *d += *s;
            }
        }
    }
}

impl Scratch {
    pub fn new(integrator: Integrator, d: usize, w: usize, steps: usize, c: usize, g: usize) -> Self {
        let st = g * w * V;
        let z = |len: usize| vec![0.0f32; len];
        let stored = matches!(integrator, Integrator::Resnet | Integrator::Antisym);
        Scratch {
            x: z(g * d * V),
            labels: vec![0; g * V],
            valid: 0,
            y0: z(st),
            y: z(st),
            z: z(st),
            zn: z(st),
            yb: z(st),
            zb: z(st),
            s: z(st),
            t: z(st),
            a2: z(if integrator == Integrator::Leapfrog { st } else { 0 }),
            logits: z(g * c * V),
            store: z(if stored { (steps + 1) * st } else { 0 }),
            tr: Trans::new(w, g * V),
        }
    }

    /// f32 values held (for [`super::FastWorkspace::work_bytes`]).
    pub fn len(&self) -> usize {
        let Scratch { x, labels, y0, y, z, zn, yb, zb, s, t, a2, logits, store, tr, .. } = self;
        [x, y0, y, z, zn, yb, zb, s, t, a2, logits, store, &tr.qt, &tr.st, &tr.dkp]
            .iter()
            .map(|v| v.len())
            .sum::<usize>()
            + labels.len()
    }

    /// Loads examples first.. of the batch into the tile, transposed to [d][V] per block.
    pub fn load(&mut self, ctx: &Ctx, first: usize) {
        let (d, n) = (ctx.d, ctx.labels.len());
        let tile = ctx.g * V;
        self.valid = (n - first).min(tile);
        for (g, (xb, lb)) in self.x.chunks_exact_mut(d * V).zip(self.labels.chunks_exact_mut(V)).enumerate() {
            for l in 0..V {
                let e = first + g * V + l;
                if e < n {
                    for k in 0..d {
                        xb[k * V + l] = ctx.x[e * d + k];
                    }
                    lb[l] = ctx.labels[e];
                } else {
                    for k in 0..d {
                        xb[k * V + l] = 0.0;
                    }
                    lb[l] = 0;
                }
            }
        }
    }
}

/// The labels of the tile and how many of its examples are real.
#[derive(Clone, Copy)]
struct Tile<'a> {
    labels: &'a [u32],
    valid: usize,
}

/// Block g of a tile array whose blocks have `rows` rows.
#[inline(always)]
fn blk(a: &[f32], g: usize, rows: usize) -> &[f32] {
    &a[g * rows * V..(g + 1) * rows * V]
}

#[inline(always)]
fn blk_mut(a: &mut [f32], g: usize, rows: usize) -> &mut [f32] {
    &mut a[g * rows * V..(g + 1) * rows * V]
}

#[inline(always)]
fn row(a: &[f32], i: usize) -> &Lanes {
    a[i * V..(i + 1) * V].try_into().expect("V lanes")
}

#[inline(always)]
fn row_mut(a: &mut [f32], i: usize) -> &mut Lanes {
    (&mut a[i * V..(i + 1) * V]).try_into().expect("V lanes")
}

/// Where a tile's gradient goes: the shared sink, as tile number `t`.
#[derive(Clone, Copy)]
pub(crate) struct Out<'a> {
    pub sink: &'a Sink<'a>,
    pub t: usize,
}

/// The whole tile: forward, loss, adjoint, added into the sink.
#[inline(always)]
pub(crate) fn run<X: Isa, S: Act>(isa: X, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    match ctx.integrator {
        Integrator::Hamiltonian => verlet::<X, S>(isa, ctx, sc, out),
        Integrator::Leapfrog => leapfrog::<X, S>(isa, ctx, sc, out),
        Integrator::Resnet | Integrator::Antisym => euler::<X, S>(isa, ctx, sc, out),
    }
}

/// Opening layer y_0 = sigma(K_in x + b_in) into `y`.
#[inline(always)]
fn open<X: Isa, S: Act>(isa: X, ctx: &Ctx, x: &[f32], y: &mut [f32]) {
    let (d, w) = (ctx.d, ctx.w);
    for g in 0..ctx.g {
        let yg = blk_mut(y, g, w);
        mm(
            isa,
            ctx.kin,
            w,
            d,
            blk(x, g, d),
            #[inline(always)]
            |i, u| {
                isa.store_at(yg, i, S::f(isa, isa.add(u, isa.splat(ctx.b_in[i]))));
            },
        );
    }
}

/// Classifier, softmax cross-entropy and its adjoint: accumulates loss, hits, dW and dmu,
/// and leaves ybar = W^T dlogits in `yb` (zero in padding lanes).
#[inline(always)]
fn classify<X: Isa>(isa: X, ctx: &Ctx, t: Tile, logits: &mut [f32], y: &[f32], yb: &mut [f32], out: Out) {
    let (w, c) = (ctx.w, ctx.c);
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for g in 0..ctx.g {
        let lg = blk_mut(logits, g, c);
        mm(
            isa,
            ctx.wc,
            c,
            w,
            blk(y, g, w),
            #[inline(always)]
            |i, u| {
                isa.store_at(lg, i, isa.add(u, isa.splat(ctx.mu[i])));
            },
        );
        // Softmax per lane with the max shift; the first arg-max, as the reference.
        let mut max = *row(lg, 0);
        let mut arg = [0u32; V];
        for i in 1..c {
            let li = row(lg, i);
            for l in 0..V {
                if li[l] > max[l] {
                    max[l] = li[l];
                    arg[l] = i as u32;
                }
            }
        }
        let labels: &[u32; V] = t.labels[g * V..(g + 1) * V].try_into().expect("V labels");
        let mut sum = [0.0f32; V];
        let mut picked = [0.0f32; V];
        for i in 0..c {
            let li = row_mut(lg, i);
            for l in 0..V {
                if labels[l] == i as u32 {
                    picked[l] = li[l] - max[l];
                }
                li[l] = exp(li[l] - max[l]);
                sum[l] += li[l];
            }
        }
        let valid = t.valid.saturating_sub(g * V).min(V);
        for l in 0..valid {
            loss += (sum[l].ln() - picked[l]) as f64;
            correct += (arg[l] == labels[l]) as usize;
        }
        // dlogits = (softmax - onehot) / n, zero in padding lanes.
        let mut scale = [0.0f32; V];
        for l in 0..valid {
            scale[l] = ctx.inv_n / sum[l];
        }
        for i in 0..c {
            let li = row_mut(lg, i);
            for l in 0..V {
                let one = if labels[l] == i as u32 && l < valid { ctx.inv_n } else { 0.0 };
                li[l] = li[l] * scale[l] - one;
            }
        }
    }
    let mut head = out.sink.head(out.t);
    let h = &mut *head;
    reduce(isa, &Outer { p: logits, q: y, rs: None, mi: c, mk: w }, h.wc, false);
    row_sums(isa, logits, None, c, h.mu, false);
    *h.loss += loss;
    *h.correct += correct;
    drop(head);
    for g in 0..ctx.g {
        let ybg = blk_mut(yb, g, w);
        mm(
            isa,
            ctx.wct,
            w,
            c,
            blk(logits, g, c),
            #[inline(always)]
            |i, u| isa.store_at(ybg, i, u),
        );
    }
}

/// Opening layer adjoint: s = sigma'(u_in) * ybar (sigma' from y_0); dK_in += s x^T, db_in += s.
#[inline(always)]
fn open_back<X: Isa, S: Act>(isa: X, ctx: &Ctx, y0: &[f32], yb: &[f32], s: &mut [f32], x: &[f32], out: Out) {
    for i in 0..y0.len() / V {
        let v = isa.mul(S::df(isa, isa.load_at(y0, i)), isa.load_at(yb, i));
        isa.store_at(s, i, v);
    }
    let mut open = out.sink.open(out.t);
    let (dk_in, db_in) = &mut *open;
    reduce(isa, &Outer { p: s, q: x, rs: None, mi: ctx.w, mk: ctx.d }, dk_in, false);
    row_sums(isa, s, None, ctx.w, db_in, false);
}

/// hamiltonian (Verlet): forward, then the fused adjoint with reverse-time rebuild of
/// MODEL.md section 4; no stored states.
#[inline(always)]
fn verlet<X: Isa, S: Act>(isa: X, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    let (w, steps) = (ctx.w, ctx.steps);
    let (h, mh) = (isa.splat(ctx.h), isa.splat(-ctx.h));
    open::<X, S>(isa, ctx, &sc.x, &mut sc.y);
    sc.y0.copy_from_slice(&sc.y);
    sc.z.fill(0.0);
    for j in 0..steps {
        let (k, kt, b) = ctx.step(j);
        for g in 0..ctx.g {
            let (yg, zg) = (blk_mut(&mut sc.y, g, w), blk_mut(&mut sc.z, g, w));
            // z -= h sigma(K^T y + b)
            mm(
                isa,
                kt,
                w,
                w,
                yg,
                #[inline(always)]
                |i, c| {
                    let t = S::f(isa, isa.add(c, isa.splat(b[i])));
                    isa.store_at(zg, i, isa.fma(mh, t, isa.load_at(zg, i)));
                },
            );
            // y += h sigma(K z + b)
            mm(
                isa,
                k,
                w,
                w,
                zg,
                #[inline(always)]
                |i, u| {
                    let t = S::f(isa, isa.add(u, isa.splat(b[i])));
                    isa.store_at(yg, i, isa.fma(h, t, isa.load_at(yg, i)));
                },
            );
        }
    }
    classify(isa, ctx, Tile { labels: &sc.labels, valid: sc.valid }, &mut sc.logits, &sc.y, &mut sc.yb, out);
    sc.zb.fill(0.0);
    for j in (0..steps).rev() {
        let (k, kt, b) = ctx.step(j);
        for g in 0..ctx.g {
            let yg = blk_mut(&mut sc.y, g, w);
            let zg = blk(&sc.z, g, w);
            let zng = blk_mut(&mut sc.zn, g, w);
            let ybg = blk_mut(&mut sc.yb, g, w);
            let zbg = blk_mut(&mut sc.zb, g, w);
            let sg = blk_mut(&mut sc.s, g, w);
            let tg = blk_mut(&mut sc.t, g, w);
            // u = K z_{j+1} + b; s = sigma'(u) h ybar; rebuild y_j = y_{j+1} - h sigma(u).
            mm(
                isa,
                k,
                w,
                w,
                zg,
                #[inline(always)]
                |i, u| {
                    let t = S::f(isa, isa.add(u, isa.splat(b[i])));
                    isa.store_at(sg, i, isa.mul(isa.mul(S::df(isa, t), h), isa.load_at(ybg, i)));
                    isa.store_at(yg, i, isa.fma(mh, t, isa.load_at(yg, i)));
                },
            );
            // zbar += K^T s; c = K^T y_j + b; t = -(sigma'(c) h zbar); z_j = z_{j+1} + h sigma(c).
            mm2(
                isa,
                kt,
                w,
                w,
                sg,
                yg,
                #[inline(always)]
                |i, ks, c| {
                    let zb = isa.add(isa.load_at(zbg, i), ks);
                    isa.store_at(zbg, i, zb);
                    let t = S::f(isa, isa.add(c, isa.splat(b[i])));
                    isa.store_at(tg, i, isa.mul(isa.mul(S::df(isa, t), mh), zb));
                    isa.store_at(zng, i, isa.fma(h, t, isa.load_at(zg, i)));
                },
            );
            // ybar += K t
            mm(
                isa,
                k,
                w,
                w,
                tg,
                #[inline(always)]
                |i, kt| {
                    isa.store_at(ybg, i, isa.add(isa.load_at(ybg, i), kt));
                },
            );
        }
        // dK_j += s z_{j+1}^T + y_j t^T; db_j += s + t.
        let mut grad = out.sink.step(out.t, j);
        let (dk, db) = &mut *grad;
        step_grad(isa, w, &mut sc.tr, &sc.s, &sc.z, Some((&sc.y, &sc.t)), dk, false);
        row_sums(isa, &sc.s, Some(&sc.t), w, db, false);
        drop(grad);
        std::mem::swap(&mut sc.z, &mut sc.zn);
    }
    open_back::<X, S>(isa, ctx, &sc.y0, &sc.yb, &mut sc.s, &sc.x, out);
}

/// leapfrog: forward, then the adjoint of MODEL.md section 4 with y_{j-1} rebuilt in reverse
/// time (section 3); no stored states.
#[inline(always)]
fn leapfrog<X: Isa, S: Act>(isa: X, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    let (w, steps) = (ctx.w, ctx.steps);
    let h2 = ctx.h * ctx.h;
    let (vh2, mh2, two) = (isa.splat(h2), isa.splat(-h2), isa.splat(2.0));
    open::<X, S>(isa, ctx, &sc.x, &mut sc.y);
    sc.y0.copy_from_slice(&sc.y);
    sc.z.copy_from_slice(&sc.y); // y_{-1} = y_0
    for j in 0..steps {
        let (k, kt, b) = ctx.step(j);
        for g in 0..ctx.g {
            let (yg, pg, sg) = (blk(&sc.y, g, w), blk_mut(&mut sc.z, g, w), blk_mut(&mut sc.s, g, w));
            // s = sigma(K y_j + b); y_{j+1} = 2 y_j - y_{j-1} - h^2 K^T s, over y_{j-1}.
            mm(
                isa,
                k,
                w,
                w,
                yg,
                #[inline(always)]
                |i, u| {
                    isa.store_at(sg, i, S::f(isa, isa.add(u, isa.splat(b[i]))));
                },
            );
            mm(
                isa,
                kt,
                w,
                w,
                sg,
                #[inline(always)]
                |i, f| {
                    let y2 = isa.sub(isa.mul(two, isa.load_at(yg, i)), isa.load_at(pg, i));
                    isa.store_at(pg, i, isa.fma(mh2, f, y2));
                },
            );
        }
        std::mem::swap(&mut sc.y, &mut sc.z);
    }
    classify(isa, ctx, Tile { labels: &sc.labels, valid: sc.valid }, &mut sc.logits, &sc.y, &mut sc.yb, out);
    // (nxt, cur) = (y_{j+1}, y_j); accumulators a0 = a_{j+1}, a1 = a_j, a2 = a_{j-1};
    // v = h^2 a_{j+1}; s = sigma(u); gg = g of MODEL.md.
    let Scratch { y, z, yb, zb, a2, s, t: v, zn: gg, y0, x, tr, .. } = sc;
    let (mut nxt, mut cur) = (y, z);
    let (mut a0, mut a1, mut a2) = (yb, zb, a2);
    a1.fill(0.0);
    a2.fill(0.0);
    for j in (0..steps).rev() {
        let (k, kt, b) = ctx.step(j);
        let first = j == 0;
        let carry = isa.splat(if first { 1.0 } else { 2.0 });
        for g in 0..ctx.g {
            let (curg, nxtg) = (blk(cur, g, w), blk_mut(nxt, g, w));
            let (a0g, a1g, a2g) = (blk(a0, g, w), blk_mut(a1, g, w), blk_mut(a2, g, w));
            let (vg, sg, ggg) = (blk_mut(v, g, w), blk_mut(s, g, w), blk_mut(gg, g, w));
            for i in 0..w {
                isa.store_at(vg, i, isa.mul(vh2, isa.load_at(a0g, i)));
            }
            // u = K y_j + b; s = sigma(u); g = sigma'(u) (K v).
            mm2(
                isa,
                k,
                w,
                w,
                curg,
                vg,
                #[inline(always)]
                |i, u, kv| {
                    let t = S::f(isa, isa.add(u, isa.splat(b[i])));
                    isa.store_at(sg, i, t);
                    isa.store_at(ggg, i, isa.mul(S::df(isa, t), kv));
                },
            );
            // a_j += carry a_{j+1} - K^T g; a_{j-1} -= a_{j+1};
            // y_{j-1} = 2 y_j - y_{j+1} - h^2 K^T s, over y_{j+1}.
            mm2(
                isa,
                kt,
                w,
                w,
                sg,
                ggg,
                #[inline(always)]
                |i, ks, kg| {
                    let a0i = isa.load_at(a0g, i);
                    isa.store_at(a1g, i, isa.add(isa.load_at(a1g, i), isa.sub(isa.mul(carry, a0i), kg)));
                    if !first {
                        isa.store_at(a2g, i, isa.sub(isa.load_at(a2g, i), a0i));
                        let y2 = isa.sub(isa.mul(two, isa.load_at(curg, i)), isa.load_at(nxtg, i));
                        isa.store_at(nxtg, i, isa.fma(mh2, ks, y2));
                    }
                },
            );
        }
        // dK_j -= sigma(u) v^T + g y_j^T; db_j -= g.
        let mut grad = out.sink.step(out.t, j);
        let (dk, db) = &mut *grad;
        step_grad(isa, w, tr, s, v, Some((gg, cur)), dk, true);
        row_sums(isa, gg, None, w, db, true);
        drop(grad);
        if first {
            break;
        }
        std::mem::swap(&mut nxt, &mut cur);
        (a0, a1, a2) = (a1, a2, a0);
        a2.fill(0.0);
    }
    // a1 now holds a_0 = dL/dy_0.
    open_back::<X, S>(isa, ctx, y0, a1, s, x, out);
}

/// resnet/antisym (forward Euler with M_j = K_j or A_j): the tile's states y_0 .. y_N are
/// stored on the way forward, then plain backpropagation; accumulates dL/dM_j (the caller
/// maps it onto K_j).
#[inline(always)]
fn euler<X: Isa, S: Act>(isa: X, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    let (w, steps) = (ctx.w, ctx.steps);
    let h = isa.splat(ctx.h);
    let st = ctx.g * w * V;
    open::<X, S>(isa, ctx, &sc.x, &mut sc.store[..st]);
    for j in 0..steps {
        let (m, _, b) = ctx.step(j);
        let (prev, next) = sc.store[j * st..(j + 2) * st].split_at_mut(st);
        for g in 0..ctx.g {
            let (yg, ng) = (blk(prev, g, w), blk_mut(next, g, w));
            // y_{j+1} = y_j + h sigma(M y_j + b)
            mm(
                isa,
                m,
                w,
                w,
                yg,
                #[inline(always)]
                |i, u| {
                    let t = S::f(isa, isa.add(u, isa.splat(b[i])));
                    isa.store_at(ng, i, isa.fma(h, t, isa.load_at(yg, i)));
                },
            );
        }
    }
    let tile = Tile { labels: &sc.labels, valid: sc.valid };
    classify(isa, ctx, tile, &mut sc.logits, &sc.store[steps * st..], &mut sc.yb, out);
    for j in (0..steps).rev() {
        let (m, mt, b) = ctx.step(j);
        let yj = &sc.store[j * st..(j + 1) * st];
        for g in 0..ctx.g {
            let (yg, sg, ybg) = (blk(yj, g, w), blk_mut(&mut sc.s, g, w), blk_mut(&mut sc.yb, g, w));
            // s = sigma'(M y_j + b) h ybar; ybar += M^T s.
            mm(
                isa,
                m,
                w,
                w,
                yg,
                #[inline(always)]
                |i, u| {
                    let t = S::f(isa, isa.add(u, isa.splat(b[i])));
                    isa.store_at(sg, i, isa.mul(isa.mul(S::df(isa, t), h), isa.load_at(ybg, i)));
                },
            );
            mm(
                isa,
                mt,
                w,
                w,
                sg,
                #[inline(always)]
                |i, a| {
                    isa.store_at(ybg, i, isa.add(isa.load_at(ybg, i), a));
                },
            );
        }
        // dM_j += s y_j^T; db_j += s.
        let mut grad = out.sink.step(out.t, j);
        let (dm, db) = &mut *grad;
        step_grad(isa, w, &mut sc.tr, &sc.s, yj, None, dm, false);
        row_sums(isa, &sc.s, None, w, db, false);
        drop(grad);
    }
    open_back::<X, S>(isa, ctx, &sc.store[..st], &sc.yb, &mut sc.s, &sc.x, out);
}
