//! The few dense kernels the reference needs, on row-major matrices and column vectors.
//! Loops run in a fixed order so that results are bit-reproducible.
use crate::real::Real;

/// out = M x, M rows x cols.
#[inline]
pub fn matvec<T: Real>(m: &[T], x: &[T], out: &mut [T]) {
    let cols = x.len();
    debug_assert_eq!(m.len(), out.len() * cols);
    for (o, row) in out.iter_mut().zip(m.chunks_exact(cols)) {
        *o = crate::real::dot(row, x);
    }
}

/// out = M^T x, M rows x cols (x has `rows` entries, out has `cols`).
#[inline]
pub fn matvec_t<T: Real>(m: &[T], x: &[T], out: &mut [T]) {
    let cols = out.len();
    debug_assert_eq!(m.len(), x.len() * cols);
    out.iter_mut().for_each(|o| *o = T::zero());
    for (xi, row) in x.iter().zip(m.chunks_exact(cols)) {
        crate::real::axpy(*xi, row, out);
    }
}

/// acc += a b^T (acc is a.len() x b.len()).
#[inline]
pub fn add_outer<T: Real>(acc: &mut [T], a: &[T], b: &[T]) {
    debug_assert_eq!(acc.len(), a.len() * b.len());
    for (ai, row) in a.iter().zip(acc.chunks_exact_mut(b.len())) {
        crate::real::axpy(*ai, b, row);
    }
}

/// Largest singular value of a rows x cols matrix by power iteration on M^T M
/// (deterministic start, enough iterations for a stability diagnostic).
pub fn spectral_norm(m: &[f64], rows: usize, cols: usize) -> f64 {
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let mut v: Vec<f64> = (0..cols).map(|i| 1.0 + 0.01 * i as f64).collect();
    let mut u = vec![0.0; rows];
    let mut sigma = 0.0;
    for _ in 0..200 {
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if nv == 0.0 {
            return 0.0;
        }
        v.iter_mut().for_each(|x| *x /= nv);
        matvec(m, &v, &mut u);
        matvec_t(m, &u, &mut v);
        let next = v.iter().map(|x| x * x).sum::<f64>().sqrt().sqrt();
        if (next - sigma).abs() <= 1e-12 * next {
            return next;
        }
        sigma = next;
    }
    sigma
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_explicit_sums() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
        let mut o2 = [0.0; 2];
        matvec(&m, &[1.0, 0.5, -1.0], &mut o2);
        assert_eq!(o2, [1.0 + 1.0 - 3.0, 4.0 + 2.5 - 6.0]);
        let mut o3 = [0.0; 3];
        matvec_t(&m, &[1.0, -1.0], &mut o3);
        assert_eq!(o3, [-3.0, -3.0, -3.0]);
        let mut acc = [0.0; 6];
        add_outer(&mut acc, &[1.0, 2.0], &[3.0, 4.0, 5.0]);
        assert_eq!(acc, [3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
        // diag(3, -2) rotated has singular values 3 and 2.
        let (c, s) = (0.6, 0.8);
        let r = [c * 3.0, -s * -2.0, s * 3.0, c * -2.0];
        assert!((spectral_norm(&r, 2, 2) - 3.0).abs() < 1e-9);
    }
}
