//! Seeded, platform-independent random numbers.
//!
//! PCG-64 (MCG variant) from `rand_pcg` gives the same bit stream on every machine; the
//! conversions to uniform and normal numbers are written out here so that no library upgrade can
//! silently change a data set or an initialisation (MODEL.md section 8: same seed, same data).
use rand_core::{Rng as _, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Deterministic random source used by data generators, initialisation and shuffling.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: Pcg64Mcg,
    spare_normal: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { inner: Pcg64Mcg::seed_from_u64(seed), spare_normal: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in 0..n (n > 0), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let lo = m as u64;
            if lo >= n.wrapping_neg() % n {
                return (m >> 64) as usize;
            }
        }
    }

    /// Standard normal by the Box-Muller transform (both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // in (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare_normal = Some(r * s);
        r * c
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_sane_moments() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
        let ys: Vec<f64> = (0..20000).map(|_| b.normal()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
        let mut c = Rng::new(8);
        assert_ne!(c.normal(), xs[0]);
        let counts = (0..30000).fold([0usize; 3], |mut acc, _| {
            acc[c.below(3)] += 1;
            acc
        });
        assert!(counts.iter().all(|&k| (9000..11000).contains(&k)), "{counts:?}");
    }
}
