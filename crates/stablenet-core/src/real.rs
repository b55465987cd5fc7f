//! The scalar type the CPU reference is generic over (f32 and f64 share one implementation).
use num_traits::{Float, FromPrimitive, ToPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

pub trait Real:
    Float
    + FromPrimitive
    + ToPrimitive
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Converts an f64 constant (h, gamma, learning rates) into this type.
    fn c(x: f64) -> Self {
        Self::from_f64(x).expect("f64 converts to every Real")
    }
    fn f64(self) -> f64 {
        self.to_f64().expect("Real converts to f64")
    }
}

impl Real for f32 {}
impl Real for f64 {}

/// Dot product in a fixed order (deterministic).
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let mut s = T::zero();
    for (x, y) in a.iter().zip(b) {
        s += *x * *y;
    }
    s
}

/// y += alpha * x
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}
