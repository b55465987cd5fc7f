//! Worst-error measures for comparing one computation against another (GPU against CPU, f32
//! against f64, ours against PyTorch's), shared by the tests and `cargo xtask validate`.
//!
//! They fail closed: `f64::max` drops a NaN operand, so a plain `fold(0.0, f64::max)` scores
//! an all-NaN result as error 0. Here any non-finite value on either side, or a length
//! mismatch, is an error of `f64::INFINITY`, which no tolerance accepts.
use crate::real::Real;

/// max |a_i - b_i|; `f64::INFINITY` when the lengths differ or any entry of either is not
/// finite. Two empty slices differ by 0.
pub fn max_abs_diff<A: Real, B: Real>(a: &[A], b: &[B]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        // NaN or an infinity on either side makes the difference NaN or infinite.
        let d = (x.f64() - y.f64()).abs();
        if !d.is_finite() {
            return f64::INFINITY;
        }
        worst = worst.max(d);
    }
    worst
}

/// max |v_i| (0 for an empty slice); `f64::INFINITY` when any entry is not finite.
pub fn max_abs<T: Real>(v: &[T]) -> f64 {
    v.iter().fold(0.0f64, |m, x| {
        let a = x.f64().abs();
        if a.is_finite() { m.max(a) } else { f64::INFINITY }
    })
}

/// Smallest scale [`errors`] divides by: an all-zero reference then gives a relative error
/// of about the absolute one times 1e12, not a division by zero.
pub const SCALE_FLOOR: f64 = 1e-12;

/// (max |a - b|, max |a - b| / max |b|) of a result `a` against its reference `b`, the scale
/// floored at [`SCALE_FLOOR`]; both `f64::INFINITY` on any non-finite value or a length
/// mismatch.
pub fn errors<A: Real, B: Real>(a: &[A], b: &[B]) -> (f64, f64) {
    errors_floored(a, b, SCALE_FLOOR)
}

/// [`errors`] with the scale floored at `floor` instead.
pub fn errors_floored<A: Real, B: Real>(a: &[A], b: &[B], floor: f64) -> (f64, f64) {
    let abs = max_abs_diff(a, b);
    if !abs.is_finite() {
        // Not abs / max|b|: a NaN in b makes that infinity / infinity = NaN.
        return (f64::INFINITY, f64::INFINITY);
    }
    (abs, abs / max_abs(b).max(floor))
}

/// The relative error of [`errors`].
pub fn rel_error<A: Real, B: Real>(a: &[A], b: &[B]) -> f64 {
    errors(a, b).1
}

/// The worst over groups of each group's [`errors`] (pairs of a result and its reference):
/// each group is scaled by its own largest reference value, so a wrong small group (a bias
/// gradient) is not hidden behind a large one (the weights). (0, 0) for no groups.
pub fn worst_of_groups<'a, A: Real, B: Real>(groups: impl IntoIterator<Item = (&'a [A], &'a [B])>) -> (f64, f64) {
    groups.into_iter().map(|(a, b)| errors(a, b)).fold((0.0, 0.0), |(ma, mr), (a, r)| {
        // Neither is NaN (errors returns INFINITY instead), so max keeps every failure.
        (ma.max(a), mr.max(r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreeing_vectors_measure_their_difference() {
        let (abs, rel) = errors(&[1.0f32, -2.0, 0.5], &[1.0f64, -2.5, 0.5]);
        assert_eq!(abs, 0.5);
        assert_eq!(rel, 0.5 / 2.5);
        assert_eq!(errors::<f32, f64>(&[], &[]), (0.0, 0.0));
        assert_eq!(max_abs(&[0.0f64, -3.0, 2.0]), 3.0);
    }

    #[test]
    fn a_nan_or_an_infinity_anywhere_is_a_failure() {
        let nan = f32::NAN;
        for a in [vec![nan, nan, nan], vec![1.0, nan, 3.0], vec![f32::INFINITY, 2.0, 3.0]] {
            assert_eq!(max_abs_diff(&a, &[1.0f64, 2.0, 3.0]), f64::INFINITY, "{a:?}");
            assert_eq!(errors(&a, &[1.0f64, 2.0, 3.0]), (f64::INFINITY, f64::INFINITY), "{a:?}");
        }
        // On the reference side too, and infinities that agree still fail.
        assert_eq!(errors(&[1.0f32], &[f64::NAN]), (f64::INFINITY, f64::INFINITY));
        assert_eq!(errors(&[f32::INFINITY], &[f64::INFINITY]), (f64::INFINITY, f64::INFINITY));
        assert_eq!(max_abs(&[1.0f64, f64::NAN]), f64::INFINITY);
        assert!(rel_error(&[nan], &[1.0f64]) > 1e-3);
    }

    #[test]
    fn a_short_or_long_vector_is_a_failure() {
        assert_eq!(errors(&[1.0f32, 2.0], &[1.0f64, 2.0, 3.0]), (f64::INFINITY, f64::INFINITY));
        assert_eq!(errors(&[1.0f32, 2.0, 3.0], &[1.0f64, 2.0]), (f64::INFINITY, f64::INFINITY));
        assert_eq!(errors::<f32, f64>(&[], &[1.0]), (f64::INFINITY, f64::INFINITY));
    }

    #[test]
    fn each_group_is_scaled_by_itself() {
        // Weights of scale 100 right, a bias of scale 1e-3 off by 100%: hidden in one flat
        // vector (1e-3 / 100), found group by group.
        let (w, w_ref) = (vec![100.0f32, -50.0], vec![100.0f64, -50.0]);
        let (b, b_ref) = (vec![2e-3f32], vec![1e-3f64]);
        let flat: Vec<f32> = w.iter().chain(&b).copied().collect();
        let flat_ref: Vec<f64> = w_ref.iter().chain(&b_ref).copied().collect();
        assert!(rel_error(&flat, &flat_ref) < 1e-4);
        let (_, rel) = worst_of_groups([(&w[..], &w_ref[..]), (&b[..], &b_ref[..])]);
        assert!((rel - 1.0).abs() < 1e-6, "{rel}");
        let (_, rel) = worst_of_groups([(&w[..], &w_ref[..]), (&[f32::NAN][..], &b_ref[..])]);
        assert_eq!(rel, f64::INFINITY);
    }
}
