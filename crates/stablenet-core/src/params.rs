//! Network parameters (MODEL.md section 1), stored row-major as in the model files.
//!
//! Names and shapes follow PyTorch's `Linear` convention (out x in), so `k[j]` acts as
//! `K_j y` on a column `y`.
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::real::{Real, dot};
use crate::rng::Rng;

/// The six tensor groups, in model-file order.
pub const GROUP_NAMES: [&str; 6] =
    ["opening.weight", "opening.bias", "steps.weight", "steps.bias", "classifier.weight", "classifier.bias"];

#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    pub d: usize,
    pub w: usize,
    pub n: usize,
    pub c: usize,
    /// K_in, w x d.
    pub k_in: Vec<T>,
    /// b_in, w.
    pub b_in: Vec<T>,
    /// K_0 .. K_{N-1}, each w x w.
    pub k: Vec<T>,
    /// b_0 .. b_{N-1}, each w.
    pub b: Vec<T>,
    /// Classifier W, C x w.
    pub wc: Vec<T>,
    /// Classifier bias mu, C.
    pub mu: Vec<T>,
}

impl<T: Real> Params<T> {
    /// All zeros, with the shapes of `cfg`.
    pub fn zeros(cfg: &ModelConfig) -> Self {
        Self::zeros_shape(cfg.d, cfg.width, cfg.steps, cfg.classes)
    }

    pub fn zeros_shape(d: usize, w: usize, n: usize, c: usize) -> Self {
        let z = |len| vec![T::zero(); len];
        Params { d, w, n, c, k_in: z(w * d), b_in: z(w), k: z(n * w * w), b: z(n * w), wc: z(c * w), mu: z(c) }
    }

    pub fn zeros_like(&self) -> Self {
        Self::zeros_shape(self.d, self.w, self.n, self.c)
    }

    /// The initialisation of BENCH.md and the CLI: K_in ~ N(0, 1/d), K_j ~ N(0, 1/w),
    /// W ~ N(0, 1/w), all biases 0.
    pub fn init(cfg: &ModelConfig, seed: u64) -> Self {
        let mut p = Self::zeros(cfg);
        let mut rng = Rng::new(seed);
        let mut fill = |v: &mut [T], fan_in: usize| {
            let s = 1.0 / (fan_in as f64).sqrt();
            for x in v {
                *x = T::c(s * rng.normal());
            }
        };
        fill(&mut p.k_in, cfg.d);
        fill(&mut p.k, cfg.width);
        fill(&mut p.wc, cfg.width);
        p
    }

    /// Checks that the shapes agree with a configuration.
    pub fn check_shape(&self, cfg: &ModelConfig) -> Result<()> {
        let want = (cfg.d, cfg.width, cfg.steps, cfg.classes);
        let have = (self.d, self.w, self.n, self.c);
        if want != have {
            return Err(Error::Shape(format!(
                "parameters have (d, w, N, C) = {have:?} but the configuration says {want:?}"
            )));
        }
        for (name, v) in self.groups() {
            let len = self.group_len(name);
            if v.len() != len {
                return Err(Error::Shape(format!("{name} holds {} values, expected {len}", v.len())));
            }
        }
        Ok(())
    }

    /// Number of values in a group, from the dimensions.
    pub fn group_len(&self, name: &str) -> usize {
        let (d, w, n, c) = (self.d, self.w, self.n, self.c);
        match name {
            "opening.weight" => w * d,
            "opening.bias" => w,
            "steps.weight" => n * w * w,
            "steps.bias" => n * w,
            "classifier.weight" => c * w,
            "classifier.bias" => c,
            _ => 0,
        }
    }

    /// The PyTorch-convention shape of a group.
    pub fn group_shape(&self, name: &str) -> Vec<usize> {
        let (d, w, n, c) = (self.d, self.w, self.n, self.c);
        match name {
            "opening.weight" => vec![w, d],
            "opening.bias" => vec![w],
            "steps.weight" => vec![n, w, w],
            "steps.bias" => vec![n, w],
            "classifier.weight" => vec![c, w],
            "classifier.bias" => vec![c],
            _ => vec![],
        }
    }

    pub fn groups(&self) -> [(&'static str, &[T]); 6] {
        [
            (GROUP_NAMES[0], &self.k_in),
            (GROUP_NAMES[1], &self.b_in),
            (GROUP_NAMES[2], &self.k),
            (GROUP_NAMES[3], &self.b),
            (GROUP_NAMES[4], &self.wc),
            (GROUP_NAMES[5], &self.mu),
        ]
    }

    pub fn groups_mut(&mut self) -> [(&'static str, &mut Vec<T>); 6] {
        [
            (GROUP_NAMES[0], &mut self.k_in),
            (GROUP_NAMES[1], &mut self.b_in),
            (GROUP_NAMES[2], &mut self.k),
            (GROUP_NAMES[3], &mut self.b),
            (GROUP_NAMES[4], &mut self.wc),
            (GROUP_NAMES[5], &mut self.mu),
        ]
    }

    /// K_j as a w x w row-major slice.
    pub fn k_step(&self, j: usize) -> &[T] {
        let ww = self.w * self.w;
        &self.k[j * ww..(j + 1) * ww]
    }

    pub fn b_step(&self, j: usize) -> &[T] {
        &self.b[j * self.w..(j + 1) * self.w]
    }

    pub fn num_values(&self) -> usize {
        self.groups().iter().map(|(_, v)| v.len()).sum()
    }

    /// Inner product over all groups (deterministic order).
    pub fn dot(&self, other: &Self) -> T {
        self.groups().iter().zip(other.groups().iter()).map(|((_, a), (_, b))| dot(a, b)).sum()
    }

    /// self += alpha * other
    pub fn axpy(&mut self, alpha: T, other: &Self) {
        for ((_, a), (_, b)) in self.groups_mut().into_iter().zip(other.groups()) {
            crate::real::axpy(alpha, b, a);
        }
    }

    pub fn scale(&mut self, alpha: T) {
        for (_, v) in self.groups_mut() {
            v.iter_mut().for_each(|x| *x *= alpha);
        }
    }

    pub fn fill(&mut self, value: T) {
        for (_, v) in self.groups_mut() {
            v.iter_mut().for_each(|x| *x = value);
        }
    }

    /// Converts to another scalar type (f32 <-> f64).
    pub fn cast<U: Real>(&self) -> Params<U> {
        let cv = |v: &[T]| v.iter().map(|x| U::c(x.f64())).collect::<Vec<U>>();
        Params {
            d: self.d,
            w: self.w,
            n: self.n,
            c: self.c,
            k_in: cv(&self.k_in),
            b_in: cv(&self.b_in),
            k: cv(&self.k),
            b: cv(&self.b),
            wc: cv(&self.wc),
            mu: cv(&self.mu),
        }
    }

    /// The first group holding a NaN or infinity, if any.
    pub fn first_non_finite(&self) -> Option<&'static str> {
        self.groups().into_iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())).map(|(n, _)| n)
    }

    /// An error naming the first group with a NaN or infinity: training from it would stop
    /// as "diverged", and a forward pass would give NaN logits.
    pub fn check_finite(&self) -> Result<()> {
        match self.first_non_finite() {
            Some(group) => Err(Error::Data(format!("the parameters hold a NaN or infinity in {group}"))),
            None => Ok(()),
        }
    }

    /// Largest |x| over all groups.
    pub fn max_abs(&self) -> T {
        self.groups().iter().flat_map(|(_, v)| v.iter()).fold(T::zero(), |m, x| m.max(x.abs()))
    }
}
