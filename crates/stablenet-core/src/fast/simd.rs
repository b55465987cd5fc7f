//! Rows of [`V`] lanes (one example per lane) and the few vector operations the fast path
//! needs, behind one trait with three implementations chosen at run time:
//!
//! - [`Portable`]: `[f32; 16]` and plain loops (whatever the compiler makes of them; SSE2 on
//!   x86_64), with separate multiply and add;
//! - [`Avx2`]: two 256-bit registers per row, fused multiply-add;
//! - [`Avx512`]: one 512-bit register per row, fused multiply-add.
//!
//! Autovectorisation of the same kernels written on `[f32; 16]` arrays proved unreliable
//! (LLVM scalarised the reductions and spilled the accumulators: 5-10x slower), hence the
//! explicit intrinsics. The x86 types are tokens: a value exists only when the CPU has the
//! features ([`Avx2::new`], [`Avx512::new`]), which is what makes their methods sound; the
//! kernels are compiled for those features in `fast::mod`'s dispatch functions.
#![allow(clippy::excessive_precision)] // the published coefficients, digit for digit

/// Examples per block (lanes of one row).
pub const V: usize = 16;

/// One value per example of a block, in memory.
pub type Lanes = [f32; V];

/// A vector instruction set, as a token: `Self::R` is one row of V lanes in registers.
pub trait Isa: Copy + Send + Sync + 'static {
    type R: Copy;
    fn load(self, s: &Lanes) -> Self::R;
    fn store(self, s: &mut Lanes, v: Self::R);
    fn splat(self, x: f32) -> Self::R;
    fn add(self, a: Self::R, b: Self::R) -> Self::R;
    fn sub(self, a: Self::R, b: Self::R) -> Self::R;
    fn mul(self, a: Self::R, b: Self::R) -> Self::R;
    fn div(self, a: Self::R, b: Self::R) -> Self::R;
    /// a * b + c (one rounding where the instruction set has FMA).
    fn fma(self, a: Self::R, b: Self::R, c: Self::R) -> Self::R;
    /// min(c, x) and max(c, x) for a constant c; a NaN in x comes out as NaN.
    fn min_c(self, c: Self::R, x: Self::R) -> Self::R;
    fn max_c(self, c: Self::R, x: Self::R) -> Self::R;
    /// 1 where a > 0, else 0.
    fn positive(self, a: Self::R) -> Self::R;
    /// Sum of the lanes in a fixed order.
    fn hsum(self, a: Self::R) -> f32;

    #[inline(always)]
    fn zero(self) -> Self::R {
        self.splat(0.0)
    }

    #[inline(always)]
    fn load_at(self, s: &[f32], i: usize) -> Self::R {
        self.load(lanes(&s[i * V..(i + 1) * V]))
    }

    #[inline(always)]
    fn store_at(self, s: &mut [f32], i: usize, v: Self::R) {
        self.store(lanes_mut(&mut s[i * V..(i + 1) * V]), v)
    }
}

/// The lane vector at the start of `s` (exactly V values).
#[inline(always)]
pub fn lanes(s: &[f32]) -> &Lanes {
    s.try_into().expect("a slice of V values")
}

#[inline(always)]
pub fn lanes_mut(s: &mut [f32]) -> &mut Lanes {
    s.try_into().expect("a slice of V values")
}

/// Beyond this |x|, tanh(x) rounds to +-1 in f32 (Eigen's clamp for the same rational form).
const TANH_CLAMP: f32 = 7.90531110763549805;

/// tanh by the [13/6] odd/even rational minimax form of Eigen and XLA
/// (`generic_fast_tanh_float`): x P(x^2) / Q(x^2) on [-7.9053, 7.9053], clamped outside.
/// Branch-free; NaN passes through. Max |error| against f64 tanh, measured over [-10, 10] on
/// a 2^-16 grid: 4.3e-7 without FMA, 3.4e-7 with (test `tanh_accuracy`).
#[inline(always)]
pub fn tanh<X: Isa>(isa: X, x: X::R) -> X::R {
    let x = isa.min_c(isa.splat(TANH_CLAMP), x);
    let x = isa.max_c(isa.splat(-TANH_CLAMP), x);
    let x2 = isa.mul(x, x);
    let c = |v: f32| isa.splat(v);
    let mut p = isa.fma(x2, c(-2.76076847742355e-16), c(2.00018790482477e-13));
    p = isa.fma(x2, p, c(-8.60467152213735e-11));
    p = isa.fma(x2, p, c(5.12229709037114e-08));
    p = isa.fma(x2, p, c(1.48572235717979e-05));
    p = isa.fma(x2, p, c(6.37261928875436e-04));
    p = isa.fma(x2, p, c(4.89352455891786e-03));
    let mut q = isa.fma(x2, c(1.19825839466702e-06), c(1.18534705686654e-04));
    q = isa.fma(x2, q, c(2.26843463243900e-03));
    q = isa.fma(x2, q, c(4.89352518554385e-03));
    isa.div(isa.mul(x, p), q)
}

/// exp(x) for x in [-87, 88] (clamped there), scalar: Cephes' reduction by ln 2 and degree-5
/// polynomial, about 1 ulp; free of float-to-int casts (the 1.5 * 2^23 rounding trick).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693359375;
    let r = r + n * 2.12194440e-4;
    let mut p = 1.9875691500e-4 * r + 1.3981999507e-3;
    p = p * r + 8.3334519073e-3;
    p = p * r + 4.1665795894e-2;
    p = p * r + 1.6666665459e-1;
    p = p * r + 5.0000001201e-1;
    let p = p * (r * r) + r + 1.0;
    // 2^n from the exponent bits (n in -126..=127 after the clamp).
    let bits = t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// The activation sigma, and sigma' from the value t = sigma(u) (tanh: 1 - t^2; relu: t > 0,
/// which is u > 0, as in the reference).
pub trait Act: Copy + Send + Sync + 'static {
    fn f<X: Isa>(isa: X, u: X::R) -> X::R;
    fn df<X: Isa>(isa: X, t: X::R) -> X::R;
}

#[derive(Clone, Copy)]
pub struct Tanh;

#[derive(Clone, Copy)]
pub struct Relu;

impl Act for Tanh {
    #[inline(always)]
    fn f<X: Isa>(isa: X, u: X::R) -> X::R {
        tanh(isa, u)
    }
    #[inline(always)]
    fn df<X: Isa>(isa: X, t: X::R) -> X::R {
        isa.sub(isa.splat(1.0), isa.mul(t, t))
    }
}

impl Act for Relu {
    #[inline(always)]
    fn f<X: Isa>(isa: X, u: X::R) -> X::R {
        isa.max_c(isa.zero(), u)
    }
    #[inline(always)]
    fn df<X: Isa>(isa: X, t: X::R) -> X::R {
        isa.positive(t)
    }
}

/// Plain Rust on arrays.
#[derive(Clone, Copy)]
pub struct Portable;

impl Portable {
    #[inline(always)]
    fn map(mut a: Lanes, b: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
        for l in 0..V {
            a[l] = f(a[l], b[l]);
        }
        a
    }
}

#[allow(clippy::needless_range_loop)]
impl Isa for Portable {
    type R = Lanes;
    #[inline(always)]
    fn load(self, s: &Lanes) -> Lanes {
        *s
    }
    #[inline(always)]
    fn store(self, s: &mut Lanes, v: Lanes) {
        *s = v;
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Lanes {
        [x; V]
    }
    #[inline(always)]
    fn add(self, a: Lanes, b: Lanes) -> Lanes {
        Self::map(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: Lanes, b: Lanes) -> Lanes {
        Self::map(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: Lanes, b: Lanes) -> Lanes {
        Self::map(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: Lanes, b: Lanes) -> Lanes {
        Self::map(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn fma(self, mut a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        for l in 0..V {
            a[l] = a[l] * b[l] + c[l];
        }
        a
    }
    #[inline(always)]
    fn min_c(self, c: Lanes, x: Lanes) -> Lanes {
        Self::map(c, x, |c, x| if x > c { c } else { x })
    }
    #[inline(always)]
    fn max_c(self, c: Lanes, x: Lanes) -> Lanes {
        Self::map(c, x, |c, x| if x < c { c } else { x })
    }
    #[inline(always)]
    fn positive(self, mut a: Lanes) -> Lanes {
        for x in a.iter_mut() {
            *x = if *x > 0.0 { 1.0 } else { 0.0 };
        }
        a
    }
    #[inline(always)]
    fn hsum(self, a: Lanes) -> f32 {
        let mut h = [0.0f32; 8];
        for l in 0..8 {
            h[l] = a[l] + a[l + 8];
        }
        let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
        (q[0] + q[2]) + (q[1] + q[3])
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, Lanes};
    use std::arch::x86_64::*;

    /// AVX2 + FMA token (construct with [`Avx2::new`]).
    #[derive(Clone, Copy)]
    pub struct Avx2(());

    impl Avx2 {
        pub fn new() -> Option<Self> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
        }
    }

    /// AVX-512 (F, VL, DQ, BW) + FMA token (construct with [`Avx512::new`]).
    #[derive(Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        pub fn new() -> Option<Self> {
            let ok = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma");
            ok.then_some(Avx512(()))
        }
    }

    // SAFETY (every `unsafe` block below): a token value exists only when the CPU has the
    // instruction set (the constructors above are the only way to make one), so calling its
    // intrinsics is sound; the loads and stores read and write exactly the 16 values of the
    // `&Lanes` / `&mut Lanes` they are given (unaligned access).

    impl Isa for Avx2 {
        type R = [__m256; 2];
        #[inline(always)]
        fn load(self, s: &Lanes) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_loadu_ps(s.as_ptr()), _mm256_loadu_ps(s.as_ptr().add(8))] }
        }
        #[inline(always)]
        fn store(self, s: &mut Lanes, v: Self::R) {
            // SAFETY: see above.
            unsafe {
                _mm256_storeu_ps(s.as_mut_ptr(), v[0]);
                _mm256_storeu_ps(s.as_mut_ptr().add(8), v[1]);
            }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_set1_ps(x); 2] }
        }
        #[inline(always)]
        fn add(self, a: Self::R, b: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_add_ps(a[0], b[0]), _mm256_add_ps(a[1], b[1])] }
        }
        #[inline(always)]
        fn sub(self, a: Self::R, b: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_sub_ps(a[0], b[0]), _mm256_sub_ps(a[1], b[1])] }
        }
        #[inline(always)]
        fn mul(self, a: Self::R, b: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_mul_ps(a[0], b[0]), _mm256_mul_ps(a[1], b[1])] }
        }
        #[inline(always)]
        fn div(self, a: Self::R, b: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_div_ps(a[0], b[0]), _mm256_div_ps(a[1], b[1])] }
        }
        #[inline(always)]
        fn fma(self, a: Self::R, b: Self::R, c: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_fmadd_ps(a[0], b[0], c[0]), _mm256_fmadd_ps(a[1], b[1], c[1])] }
        }
        #[inline(always)]
        fn min_c(self, c: Self::R, x: Self::R) -> Self::R {
            // minps returns its second operand when either is NaN.
            // SAFETY: see above.
            unsafe { [_mm256_min_ps(c[0], x[0]), _mm256_min_ps(c[1], x[1])] }
        }
        #[inline(always)]
        fn max_c(self, c: Self::R, x: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe { [_mm256_max_ps(c[0], x[0]), _mm256_max_ps(c[1], x[1])] }
        }
        #[inline(always)]
        fn positive(self, a: Self::R) -> Self::R {
            // SAFETY: see above.
            unsafe {
                let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
                let m = |x| _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, zero), one);
                [m(a[0]), m(a[1])]
            }
        }
        #[inline(always)]
        fn hsum(self, a: Self::R) -> f32 {
            // SAFETY: see above.
            unsafe {
                let h = _mm256_add_ps(a[0], a[1]); // lanes l + l+8
                let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h)); // + l+4
                let e = _mm_add_ps(q, _mm_movehl_ps(q, q)); // (0+2), (1+3)
                _mm_cvtss_f32(_mm_add_ss(e, _mm_shuffle_ps::<1>(e, e)))
            }
        }
    }

    impl Isa for Avx512 {
        type R = __m512;
        #[inline(always)]
        fn load(self, s: &Lanes) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, s: &mut Lanes, v: __m512) {
            // SAFETY: see above.
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn min_c(self, c: __m512, x: __m512) -> __m512 {
            // SAFETY: see above. vminps returns its second operand when either is NaN.
            unsafe { _mm512_min_ps(c, x) }
        }
        #[inline(always)]
        fn max_c(self, c: __m512, x: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe { _mm512_max_ps(c, x) }
        }
        #[inline(always)]
        fn positive(self, a: __m512) -> __m512 {
            // SAFETY: see above.
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_setzero_ps());
                _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0))
            }
        }
        #[inline(always)]
        fn hsum(self, a: __m512) -> f32 {
            // SAFETY: see above. The same pairing as the other variants: l + l+8, + l+4, ...
            unsafe {
                let h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps::<1>(a));
                let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
                let e = _mm_add_ps(q, _mm_movehl_ps(q, q));
                _mm_cvtss_f32(_mm_add_ss(e, _mm_shuffle_ps::<1>(e, e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max |tanh(x) - tanh_f64(x)| over [-10, 10] on a 2^-16 grid, and where.
    fn tanh_error<X: Isa>(isa: X) -> (f64, f32) {
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        let mut x = -10.0f32;
        while x <= 10.0 {
            let xs: Lanes = std::array::from_fn(|l| x + l as f32 / 65536.0);
            let mut out = [0.0; V];
            isa.store(&mut out, tanh(isa, isa.load(&xs)));
            for l in 0..V {
                let e = (out[l] as f64 - (xs[l] as f64).tanh()).abs();
                if e > worst {
                    (worst, at) = (e, xs[l]);
                }
            }
            x += V as f32 / 65536.0;
        }
        (worst, at)
    }

    fn check_isa<X: Isa>(isa: X, name: &str) {
        let (e, at) = tanh_error(isa);
        println!("tanh ({name}): max |error| {e:.3e} at x = {at}");
        assert!(e <= 1e-6, "{name}: {e} at {at}");
        let f = |x: f32| {
            let mut out = [0.0; V];
            isa.store(&mut out, tanh(isa, isa.splat(x)));
            out[0]
        };
        // Odd, exact at 0, saturates, NaN passes, tiny arguments keep their relative accuracy.
        assert_eq!(f(0.0), 0.0);
        assert_eq!(f(-1.5), -f(1.5));
        assert!((f(1e30) - 1.0).abs() < 1e-6 && (f(f32::NEG_INFINITY) + 1.0).abs() < 1e-6);
        assert!(f(f32::NAN).is_nan());
        for x in [1e-30f32, 1e-10, 1e-5] {
            assert!(((f(x) - x) / x).abs() < 1e-6);
        }
        // The other operations against plain arithmetic.
        let a: Lanes = std::array::from_fn(|l| l as f32 - 7.5);
        let b: Lanes = std::array::from_fn(|l| 0.25 * l as f32 + 1.0);
        let get = |v: X::R| {
            let mut out = [0.0; V];
            isa.store(&mut out, v);
            out
        };
        let (va, vb) = (isa.load(&a), isa.load(&b));
        assert_eq!(isa.hsum(va), a.iter().sum::<f32>());
        assert_eq!(get(isa.positive(va)), a.map(|x| if x > 0.0 { 1.0 } else { 0.0 }));
        assert_eq!(get(Relu::f(isa, va)), a.map(|x| x.max(0.0)));
        for l in 0..V {
            assert_eq!(get(isa.add(va, vb))[l], a[l] + b[l]);
            assert_eq!(get(isa.sub(va, vb))[l], a[l] - b[l]);
            assert_eq!(get(isa.mul(va, vb))[l], a[l] * b[l]);
            assert_eq!(get(isa.div(va, vb))[l], a[l] / b[l]);
            assert_eq!(get(isa.fma(va, vb, vb))[l], a[l] * b[l] + b[l]); // exact here
        }
    }

    #[test]
    fn tanh_accuracy() {
        check_isa(Portable, "portable");
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(isa) = Avx2::new() {
                check_isa(isa, "avx2");
            }
            if let Some(isa) = Avx512::new() {
                check_isa(isa, "avx512");
            }
        }
    }

    #[test]
    fn exp_accuracy() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
            x += 1.0 / 1024.0;
        }
        println!("exp: max relative error {worst:.3e}");
        assert!(worst < 5e-7, "{worst}");
        assert!(exp(-1e30) < 1e-37 && exp(-1e30) >= 0.0);
    }
}
