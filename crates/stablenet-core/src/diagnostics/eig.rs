//! Dense eigen- and singular values in f64 through nalgebra. Diagnostics only: nothing on the
//! training path depends on it.
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use nalgebra::linalg::Schur;

/// One eigenvalue re + i im.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Eig {
    pub re: f64,
    pub im: f64,
}

fn matrix(m: &[f64], rows: usize, cols: usize) -> Result<DMatrix<f64>> {
    if m.len() != rows * cols {
        return Err(Error::Shape(format!("matrix of {} values is not {rows} x {cols}", m.len())));
    }
    if let Some(v) = m.iter().find(|v| !v.is_finite()) {
        return Err(Error::Data(format!("cannot take eigen- or singular values of a matrix holding {v}")));
    }
    Ok(DMatrix::from_row_slice(rows, cols, m))
}

/// All eigenvalues of a general real n x n matrix (row-major), by a real Schur decomposition.
/// The QR iteration is capped (nalgebra's has looped forever on a few matrices); on failure it
/// retries on the transpose, which has the same eigenvalues.
pub fn eigenvalues(m: &[f64], n: usize) -> Result<Vec<Eig>> {
    let a = matrix(m, n, n)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let cap = 200 * n;
    for cand in [a.clone(), a.transpose()] {
        if let Some(s) = Schur::try_new(cand, f64::EPSILON, cap) {
            return Ok(s.complex_eigenvalues().iter().map(|c| Eig { re: c.re, im: c.im }).collect());
        }
    }
    Err(Error::Data(format!("the eigenvalue iteration did not converge on a {n} x {n} matrix")))
}

/// Eigenvalues of a symmetric n x n matrix (only its lower triangle is read), ascending.
pub fn symmetric_eigenvalues(m: &[f64], n: usize) -> Result<Vec<f64>> {
    let a = matrix(m, n, n)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut v: Vec<f64> = a.symmetric_eigenvalues().iter().copied().collect();
    v.sort_by(f64::total_cmp);
    Ok(v)
}

/// Singular values of a rows x cols matrix, descending.
pub fn singular_values(m: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    let a = matrix(m, rows, cols)?;
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    let mut v: Vec<f64> = a.singular_values().iter().copied().collect();
    v.sort_by(|a, b| b.total_cmp(a));
    Ok(v)
}

/// Largest singular value (the spectral norm); 0 for an empty matrix.
pub fn spectral_norm(m: &[f64], rows: usize, cols: usize) -> Result<f64> {
    Ok(singular_values(m, rows, cols)?.first().copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_has_purely_imaginary_eigenvalues() {
        let e = eigenvalues(&[0.0, -1.0, 1.0, 0.0], 2).unwrap();
        assert_eq!(e.len(), 2);
        for v in &e {
            assert!(v.re.abs() < 1e-14 && (v.im.abs() - 1.0).abs() < 1e-14, "{e:?}");
        }
        // A 3-d rotation by 0.3 about z: eigenvalues 1 and e^{+-0.3 i}.
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let mut e = eigenvalues(&[c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0], 3).unwrap();
        e.sort_by(|a, b| a.im.total_cmp(&b.im));
        assert!((e[0].re - c).abs() < 1e-14 && (e[0].im + s).abs() < 1e-14, "{e:?}");
        assert!((e[1].re - 1.0).abs() < 1e-14 && e[1].im.abs() < 1e-14, "{e:?}");
    }

    #[test]
    fn triangular_and_defective_matrices() {
        // The paper's K+ = [[2, -2], [0, 2]]: a double eigenvalue 2 (one Jordan block).
        let e = eigenvalues(&[2.0, -2.0, 0.0, 2.0], 2).unwrap();
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|v| (v.re - 2.0).abs() < 1e-7 && v.im.abs() < 1e-7), "{e:?}");
        let e = eigenvalues(&[0.0; 9], 3).unwrap();
        assert_eq!(e.len(), 3);
        assert!(e.iter().all(|v| v.re == 0.0 && v.im == 0.0));
        assert!(eigenvalues(&[f64::NAN], 1).is_err());
    }

    #[test]
    fn singular_and_symmetric_values() {
        let (c, s) = (0.6, 0.8);
        let r = [c * 3.0, -s * -2.0, s * 3.0, c * -2.0]; // rotation times diag(3, -2)
        let sv = singular_values(&r, 2, 2).unwrap();
        assert!((sv[0] - 3.0).abs() < 1e-12 && (sv[1] - 2.0).abs() < 1e-12, "{sv:?}");
        let ev = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((ev[0] - 1.0).abs() < 1e-12 && (ev[1] - 3.0).abs() < 1e-12, "{ev:?}");
        assert_eq!(spectral_norm(&[], 0, 3).unwrap(), 0.0);
    }
}
