//! The dense kernels of the fast path, on blocks of [`V`] examples stored as `[rows][V]`.
//!
//! - [`mm`] / [`mm2`]: out = A X for one block (A packed in panels of [`R`] rows), handing each
//!   finished row to an epilogue, so bias, activation and the state update happen while the
//!   row is still in registers (the fused step of the brief).
//! - [`reduce`]: the batch reductions dK += P Q^T (+ R S^T) over every block of a tile, summed
//!   lane-wise and then across the lanes in a fixed order.
//!
//! Everything is `#[inline(always)]` so that it is compiled inside the dispatched entry points
//! of `fast::mod` (with or without AVX2/FMA).
// Index loops over small register arrays (several arrays per index); keep them.
#![allow(clippy::needless_range_loop)]
use super::simd::{Isa, V};

/// Rows of A per panel (output rows computed together; the panel keeps A's R entries of one
/// column next to each other, so the inner loop reads A contiguously).
pub const R: usize = 4;

/// Packed size of an m x kd matrix: ceil(m / R) panels of kd x R.
pub fn packed_len(m: usize, kd: usize) -> usize {
    m.div_ceil(R) * R * kd
}

/// Packs the row-major m x kd matrix `a` (or its transpose, `a` being kd x m, when
/// `transpose`) into panels: out[p][k][r] = A[p R + r][k], zero beyond row m.
pub fn pack(a: &[f32], m: usize, kd: usize, transpose: bool, out: &mut [f32]) {
    debug_assert_eq!(out.len(), packed_len(m, kd));
    for (p, panel) in out.chunks_exact_mut(R * kd).enumerate() {
        for (k, col) in panel.chunks_exact_mut(R).enumerate() {
            for (r, o) in col.iter_mut().enumerate() {
                let i = p * R + r;
                *o = if i >= m {
                    0.0
                } else if transpose {
                    a[k * m + i]
                } else {
                    a[i * kd + k]
                };
            }
        }
    }
}

/// out = A X for one block: `a` packed (m x kd), `x` a kd x V block; calls `epi(i, row)` for
/// every output row i < m.
#[inline(always)]
pub fn mm<X: Isa>(isa: X, a: &[f32], m: usize, kd: usize, x: &[f32], mut epi: impl FnMut(usize, X::R)) {
    debug_assert_eq!(x.len(), kd * V);
    for (p, panel) in a.chunks_exact(R * kd).enumerate() {
        let mut acc = [isa.zero(); R];
        for (ak, xk) in panel.chunks_exact(R).zip(x.chunks_exact(V)) {
            let xk = isa.load(xk.try_into().expect("V lanes"));
            for r in 0..R {
                acc[r] = isa.fma(isa.splat(ak[r]), xk, acc[r]);
            }
        }
        for (r, row) in acc.into_iter().enumerate() {
            let i = p * R + r;
            if i < m {
                epi(i, row);
            }
        }
    }
}

/// Two products with the same A in one sweep (A is read once): epi(i, (A X1)_i, (A X2)_i).
#[inline(always)]
pub fn mm2<X: Isa>(
    isa: X,
    a: &[f32],
    m: usize,
    kd: usize,
    x1: &[f32],
    x2: &[f32],
    mut epi: impl FnMut(usize, X::R, X::R),
) {
    debug_assert_eq!(x1.len(), kd * V);
    debug_assert_eq!(x2.len(), kd * V);
    for (p, panel) in a.chunks_exact(R * kd).enumerate() {
        let mut acc1 = [isa.zero(); R];
        let mut acc2 = [isa.zero(); R];
        for ((ak, xk1), xk2) in panel.chunks_exact(R).zip(x1.chunks_exact(V)).zip(x2.chunks_exact(V)) {
            let xk1 = isa.load(xk1.try_into().expect("V lanes"));
            let xk2 = isa.load(xk2.try_into().expect("V lanes"));
            for r in 0..R {
                let a = isa.splat(ak[r]);
                acc1[r] = isa.fma(a, xk1, acc1[r]);
                acc2[r] = isa.fma(a, xk2, acc2[r]);
            }
        }
        for r in 0..R {
            let i = p * R + r;
            if i < m {
                epi(i, acc1[r], acc2[r]);
            }
        }
    }
}

/// The operands of a batch reduction over a tile: `p` and `r` hold mi rows per block, `q` and
/// `s` mk rows per block (blocks of V lanes, one after the other). `r`/`s` are optional.
pub struct Outer<'a> {
    pub p: &'a [f32],
    pub q: &'a [f32],
    pub rs: Option<(&'a [f32], &'a [f32])>,
    pub mi: usize,
    pub mk: usize,
}

/// out[i * mk + k] += sign * sum over blocks and lanes of (p_i q_k + r_i s_k), with
/// sign = -1 when `negate`. Register blocks of 2 x 2 outputs; fixed summation order.
#[inline(always)]
pub fn reduce<X: Isa>(isa: X, op: &Outer, out: &mut [f32], negate: bool) {
    let (mi, mk) = (op.mi, op.mk);
    debug_assert_eq!(out.len(), mi * mk);
    let mut i0 = 0;
    while i0 < mi {
        let bi = (mi - i0).min(2);
        let mut k0 = 0;
        while k0 < mk {
            let bk = (mk - k0).min(2);
            match (bi, bk, op.rs.is_some()) {
                (2, 2, true) => reduce_block::<X, 2, 2, true>(isa, op, i0, k0, out, negate),
                (2, 2, false) => reduce_block::<X, 2, 2, false>(isa, op, i0, k0, out, negate),
                (2, _, true) => reduce_block::<X, 2, 1, true>(isa, op, i0, k0, out, negate),
                (2, _, false) => reduce_block::<X, 2, 1, false>(isa, op, i0, k0, out, negate),
                (_, 2, true) => reduce_block::<X, 1, 2, true>(isa, op, i0, k0, out, negate),
                (_, 2, false) => reduce_block::<X, 1, 2, false>(isa, op, i0, k0, out, negate),
                (_, _, true) => reduce_block::<X, 1, 1, true>(isa, op, i0, k0, out, negate),
                (_, _, false) => reduce_block::<X, 1, 1, false>(isa, op, i0, k0, out, negate),
            }
            k0 += bk;
        }
        i0 += bi;
    }
}

#[inline(always)]
fn reduce_block<X: Isa, const BI: usize, const BK: usize, const TWO: bool>(
    isa: X,
    op: &Outer,
    i0: usize,
    k0: usize,
    out: &mut [f32],
    negate: bool,
) {
    let (mi, mk) = (op.mi, op.mk);
    let mut acc = [[isa.zero(); BK]; BI];
    let blocks = op.p.len() / (mi * V);
    for g in 0..blocks {
        let (mut pa, mut qb) = ([isa.zero(); BI], [isa.zero(); BK]);
        for a in 0..BI {
            pa[a] = isa.load_at(op.p, g * mi + i0 + a);
        }
        for b in 0..BK {
            qb[b] = isa.load_at(op.q, g * mk + k0 + b);
        }
        if TWO {
            let (r, s) = op.rs.expect("two-term reduction");
            let (mut ra, mut sb) = ([isa.zero(); BI], [isa.zero(); BK]);
            for a in 0..BI {
                ra[a] = isa.load_at(r, g * mi + i0 + a);
            }
            for b in 0..BK {
                sb[b] = isa.load_at(s, g * mk + k0 + b);
            }
            for a in 0..BI {
                for b in 0..BK {
                    acc[a][b] = isa.fma(pa[a], qb[b], isa.fma(ra[a], sb[b], acc[a][b]));
                }
            }
        } else {
            for a in 0..BI {
                for b in 0..BK {
                    acc[a][b] = isa.fma(pa[a], qb[b], acc[a][b]);
                }
            }
        }
    }
    for a in 0..BI {
        for b in 0..BK {
            let v = isa.hsum(acc[a][b]);
            let o = &mut out[(i0 + a) * mk + k0 + b];
            if negate {
                *o -= v;
            } else {
                *o += v;
            }
        }
    }
}

/// out[i] += sign * sum over blocks and lanes of (p_i + r_i) (bias gradients).
#[inline(always)]
pub fn row_sums<X: Isa>(isa: X, p: &[f32], r: Option<&[f32]>, m: usize, out: &mut [f32], negate: bool) {
    debug_assert_eq!(out.len(), m);
    let blocks = p.len() / (m * V);
    for (i, o) in out.iter_mut().enumerate() {
        let mut acc = isa.zero();
        for g in 0..blocks {
            acc = isa.add(acc, isa.load_at(p, g * m + i));
        }
        if let Some(r) = r {
            for g in 0..blocks {
                acc = isa.add(acc, isa.load_at(r, g * m + i));
            }
        }
        let v = isa.hsum(acc);
        if negate {
            *o -= v;
        } else {
            *o += v;
        }
    }
}

/// Writes each block of `a` (blocks of `rows` x V) transposed into `at`, one row of width
/// `wp` per example (example e = g V + l); columns rows..wp are left as they are (zero).
#[inline(always)]
pub fn transpose(a: &[f32], rows: usize, at: &mut [f32], wp: usize) {
    for (ab, atb) in a.chunks_exact(rows * V).zip(at.chunks_exact_mut(V * wp)) {
        for (i, row) in ab.chunks_exact(V).enumerate() {
            for (l, v) in row.iter().enumerate() {
                atb[l * wp + i] = *v;
            }
        }
    }
}

/// The batch reduction as a product with transposed operands, for wide states:
/// out (mi x wp, row stride wp) = sum over examples e of p_i(e) qt[e] (+ r_i(e) st[e]),
/// with p, r in blocks of mi x V and qt, st one row of wp per example. Vectorised over the
/// columns, so no sums across lanes; register blocks of 4 rows x 32 columns.
#[inline(always)]
pub fn reduce_t<X: Isa>(
    isa: X,
    p: &[f32],
    qt: &[f32],
    rs: Option<(&[f32], &[f32])>,
    mi: usize,
    wp: usize,
    out: &mut [f32],
) {
    debug_assert!(wp.is_multiple_of(V) && out.len() == mi * wp);
    let mut i0 = 0;
    while i0 < mi {
        let ri = if mi - i0 >= 4 { 4 } else { 1 };
        let mut k0 = 0;
        while k0 < wp {
            let kb = if wp - k0 >= 2 * V { 2 } else { 1 };
            let at = (i0, k0);
            match (ri, kb, rs) {
                (4, 2, Some(rs)) => rt_block::<X, 4, 2, true>(isa, p, qt, Some(rs), mi, wp, at, out),
                (4, 2, None) => rt_block::<X, 4, 2, false>(isa, p, qt, None, mi, wp, at, out),
                (4, _, Some(rs)) => rt_block::<X, 4, 1, true>(isa, p, qt, Some(rs), mi, wp, at, out),
                (4, _, None) => rt_block::<X, 4, 1, false>(isa, p, qt, None, mi, wp, at, out),
                (_, 2, Some(rs)) => rt_block::<X, 1, 2, true>(isa, p, qt, Some(rs), mi, wp, at, out),
                (_, 2, None) => rt_block::<X, 1, 2, false>(isa, p, qt, None, mi, wp, at, out),
                (_, _, Some(rs)) => rt_block::<X, 1, 1, true>(isa, p, qt, Some(rs), mi, wp, at, out),
                (_, _, None) => rt_block::<X, 1, 1, false>(isa, p, qt, None, mi, wp, at, out),
            }
            k0 += kb * V;
        }
        i0 += ri;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rt_block<X: Isa, const RI: usize, const KB: usize, const TWO: bool>(
    isa: X,
    p: &[f32],
    qt: &[f32],
    rs: Option<(&[f32], &[f32])>,
    mi: usize,
    wp: usize,
    (i0, k0): (usize, usize),
    out: &mut [f32],
) {
    let mut acc = [[isa.zero(); KB]; RI];
    let blocks = qt.len() / (V * wp);
    for g in 0..blocks {
        let pb = &p[(g * mi + i0) * V..(g * mi + i0 + RI) * V];
        let qb = &qt[g * V * wp..(g + 1) * V * wp];
        let rsb = rs.map(|(r, st)| (&r[(g * mi + i0) * V..(g * mi + i0 + RI) * V], &st[g * V * wp..(g + 1) * V * wp]));
        for l in 0..V {
            let mut q = [isa.zero(); KB];
            for b in 0..KB {
                q[b] = isa.load_at(&qb[l * wp + k0..], b);
            }
            for a in 0..RI {
                let pa = isa.splat(pb[a * V + l]);
                for b in 0..KB {
                    acc[a][b] = isa.fma(pa, q[b], acc[a][b]);
                }
            }
            if TWO {
                let (rb, sb) = rsb.expect("two-term reduction");
                let mut s = [isa.zero(); KB];
                for b in 0..KB {
                    s[b] = isa.load_at(&sb[l * wp + k0..], b);
                }
                for a in 0..RI {
                    let ra = isa.splat(rb[a * V + l]);
                    for b in 0..KB {
                        acc[a][b] = isa.fma(ra, s[b], acc[a][b]);
                    }
                }
            }
        }
    }
    for a in 0..RI {
        for b in 0..KB {
            isa.store_at(&mut out[(i0 + a) * wp + k0..], b, acc[a][b]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::simd::Portable;

    #[test]
    fn kernels_match_plain_loops() {
        let (m, kd, blocks) = (5, 3, 2);
        let a: Vec<f32> = (0..m * kd).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..blocks * kd * V).map(|i| (i as f32 * 0.11).cos()).collect();
        for transpose in [false, true] {
            // A^T of a kd x m matrix is m x kd: build that matrix and check against it.
            let at: Vec<f32> = (0..kd * m).map(|i| (i as f32 * 0.23).sin()).collect();
            let mat = |i: usize, k: usize| if transpose { at[k * m + i] } else { a[i * kd + k] };
            let mut packed = vec![0.0; packed_len(m, kd)];
            pack(if transpose { &at } else { &a }, m, kd, transpose, &mut packed);
            for g in 0..blocks {
                let xb = &x[g * kd * V..(g + 1) * kd * V];
                let mut seen = 0;
                mm(Portable, &packed, m, kd, xb, |i, row: [f32; V]| {
                    seen += 1;
                    for l in 0..V {
                        let want: f32 = (0..kd).map(|k| mat(i, k) * xb[k * V + l]).sum();
                        assert!((row[l] - want).abs() < 1e-5);
                    }
                });
                assert_eq!(seen, m);
            }
        }
        // Reductions: out[i][k] = sum_g sum_l p[g][i][l] q[g][k][l] (+ r s) and row sums.
        let (mi, mk) = (6, 37);
        let p: Vec<f32> = (0..blocks * mi * V).map(|i| (i as f32 * 0.3).sin()).collect();
        let q: Vec<f32> = (0..blocks * mk * V).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut one = vec![1.0; mi * mk];
        let mut two = vec![0.0; mi * mk];
        reduce(Portable, &Outer { p: &p, q: &q, rs: None, mi, mk }, &mut one, true);
        reduce(Portable, &Outer { p: &p, q: &q, rs: Some((&p, &q)), mi, mk }, &mut two, false);
        for i in 0..mi {
            for k in 0..mk {
                let mut want = 0.0f32;
                for g in 0..blocks {
                    for l in 0..V {
                        want += p[(g * mi + i) * V + l] * q[(g * mk + k) * V + l];
                    }
                }
                assert!((one[i * mk + k] - (1.0 - want)).abs() < 1e-4);
                assert!((two[i * mk + k] - 2.0 * want).abs() < 1e-4);
            }
        }
        // The transposed form gives the same sums (up to rounding).
        let wp = mk.div_ceil(V) * V;
        let (mut qt, mut out) = (vec![0.0; blocks * V * wp], vec![0.0; mi * wp]);
        transpose(&q, mk, &mut qt, wp);
        reduce_t(Portable, &p, &qt, Some((&p, &qt)), mi, wp, &mut out);
        for i in 0..mi {
            for k in 0..wp {
                let want = if k < mk { two[i * mk + k] } else { 0.0 };
                assert!((out[i * wp + k] - want).abs() < 1e-4, "{i} {k}");
            }
        }
        let mut sums = vec![0.0; mi];
        row_sums(Portable, &p, Some(&p), mi, &mut sums, false);
        for (i, s) in sums.iter().enumerate() {
            let want: f32 = (0..blocks * V).map(|e| p[((e / V) * mi + i) * V + e % V]).sum();
            assert!((s - 2.0 * want).abs() < 1e-4);
        }
    }
}
