//! The activation sigma and its derivative.
use crate::config::Activation;
use crate::real::Real;

impl Activation {
    #[inline]
    pub fn f<T: Real>(self, x: T) -> T {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(T::zero()),
        }
    }

    /// sigma'(x); relu' is taken as 0 at 0.
    #[inline]
    pub fn df<T: Real>(self, x: T) -> T {
        match self {
            Activation::Tanh => {
                let t = x.tanh();
                T::one() - t * t
            }
            Activation::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
        }
    }
}
