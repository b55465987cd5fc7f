//! Choosing one of the generated two-dimensional data sets of MODEL.md section 8 by name.
use std::fmt;
use std::str::FromStr;

use super::{Split, ellipses, peaks, swiss_roll};
use crate::error::Error;

/// The generated data sets, each with the MODEL.md section 8 defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Synthetic {
    Peaks,
    Ellipses,
    SwissRoll,
}

impl Synthetic {
    pub const ALL: [Synthetic; 3] = [Synthetic::Peaks, Synthetic::Ellipses, Synthetic::SwissRoll];

    /// The name accepted by [`FromStr`] (and written by [`fmt::Display`]).
    pub fn name(self) -> &'static str {
        match self {
            Synthetic::Peaks => "peaks",
            Synthetic::Ellipses => "ellipses",
            Synthetic::SwissRoll => "swiss-roll",
        }
    }

    /// Train/validation split with the MODEL.md section 8 defaults: peaks 5000/1000,
    /// ellipses 1000/200 per class, swiss roll n_arm = 256 (deterministic, ignores `seed`).
    pub fn generate(self, seed: u64) -> Split {
        match self {
            Synthetic::Peaks => peaks(5000, 1000, seed),
            Synthetic::Ellipses => ellipses(1000, 200, seed),
            Synthetic::SwissRoll => swiss_roll(256),
        }
    }
}

impl fmt::Display for Synthetic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Synthetic {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Synthetic::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| {
            let names: Vec<_> = Synthetic::ALL.iter().map(|d| d.name()).collect();
            Error::Data(format!("unknown synthetic data set '{s}'; expected one of: {}", names.join(", ")))
        })
    }
}

/// `m` equally spaced values from `a` to `b`, both ends included exactly (MATLAB/NumPy
/// `linspace`); the swiss roll and the peaks grid are defined with it in MODEL.md section 8.
pub(crate) fn linspace(a: f64, b: f64, m: usize) -> impl Iterator<Item = f64> {
    (0..m).map(move |i| if m == 1 { a } else { a + (b - a) * (i as f64 / (m - 1) as f64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_names_round_trip_and_unknown_lists_choices() {
        for d in Synthetic::ALL {
            assert_eq!(d.name().parse::<Synthetic>().unwrap(), d);
            assert_eq!(d.to_string(), d.name());
        }
        let msg = "swiss_roll".parse::<Synthetic>().unwrap_err().to_string();
        assert!(msg.contains("'swiss_roll'"), "{msg}");
        assert!(msg.contains("peaks, ellipses, swiss-roll"), "{msg}");
    }

    #[test]
    fn synthetic_generate_uses_model_md_defaults() {
        let s = Synthetic::SwissRoll.generate(0);
        assert_eq!((s.train.len(), s.val.len()), (513, 513));
        assert_eq!(s, Synthetic::SwissRoll.generate(99));
        let e = Synthetic::Ellipses.generate(3);
        assert_eq!((e.train.len(), e.val.len(), e.train.classes), (2000, 400, 2));
        assert_eq!(e, ellipses(1000, 200, 3));
        let p = Synthetic::Peaks.generate(3);
        assert_eq!((p.train.len(), p.val.len(), p.train.classes), (5000, 1000, 5));
        for s in [&s, &e, &p] {
            s.train.validate().unwrap();
            s.val.validate().unwrap();
            assert_eq!(s.train.d, 2);
        }
    }

    #[test]
    fn synthetic_linspace_hits_both_ends() {
        let v: Vec<f64> = linspace(-3.0, 3.0, 256).collect();
        assert_eq!((v[0], v[255], v.len()), (-3.0, 3.0, 256));
        assert!((v[1] - v[0] - 6.0 / 255.0).abs() < 1e-15);
        assert_eq!(linspace(0.5, 2.0, 1).collect::<Vec<_>>(), vec![0.5]);
    }
}
