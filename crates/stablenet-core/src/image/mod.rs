//! Convolutional stable networks for images (docs/IMAGES.md): the integrators of MODEL.md
//! section 2 with K_j a 3x3 convolution and K_j^T its adjoint, in stages joined by a 1x1
//! widening convolution and 2x2 average pooling, then global average pooling and the linear
//! classifier of MODEL.md section 1.
pub mod conv;
mod kernels;
mod net;
pub mod stage;
mod train;

#[cfg(test)]
mod tests;

pub use conv::Shape;
pub use net::{ImageEval, ImageNet, LossGrad};
pub use train::ImageTrainer;

use crate::config::{Activation, Integrator};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::rng::Rng;

/// The architecture of an image network.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    pub integrator: Integrator,
    pub activation: Activation,
    /// Input channels, height, width (MNIST: 1 x 28 x 28).
    pub input: Shape,
    /// Channels of each stage; each stage after the first halves H and W.
    pub channels: Vec<usize>,
    /// Steps N per stage (h = T / N).
    pub steps: usize,
    /// Final time T of every stage.
    pub final_time: f64,
    pub gamma: f64,
    pub classes: usize,
}

impl ImageConfig {
    pub fn h(&self) -> f64 {
        self.final_time / self.steps as f64
    }

    pub fn stages(&self) -> usize {
        self.channels.len()
    }

    /// The state shape of stage `s`.
    pub fn stage_shape(&self, s: usize) -> Shape {
        Shape::new(self.channels[s], self.input.h >> s, self.input.w >> s)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("image network: {m}")));
        let Shape { c, h, w } = self.input;
        if c == 0 || h == 0 || w == 0 {
            return bad(format!("input shape {c} x {h} x {w} has a zero size"));
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad(format!("channels must be one or more positive numbers, got {:?}", self.channels));
        }
        let halvings = self.stages() - 1;
        if h % (1 << halvings) != 0 || w % (1 << halvings) != 0 {
            return bad(format!(
                "{} stages halve the image {halvings} times, which needs H and W divisible by {} (got {h} x {w})",
                self.stages(),
                1 << halvings
            ));
        }
        if self.steps == 0 {
            return bad("steps per stage must be at least 1".into());
        }
        if !(self.final_time.is_finite() && self.final_time > 0.0) {
            return bad(format!("final time must be finite and > 0, got {}", self.final_time));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return bad(format!("gamma must be finite and >= 0, got {}", self.gamma));
        }
        if self.classes < 2 {
            return bad(format!("need at least 2 classes, got {}", self.classes));
        }
        Ok(())
    }

    /// Checks that a data set holds valid images of the input shape, with labels in range.
    pub fn check_data(&self, data: &crate::data::Dataset) -> Result<()> {
        data.validate()?;
        let Shape { c, h, w } = self.input;
        if data.d != self.input.len() {
            return Err(Error::Shape(format!(
                "data has {} values per example; the network expects {c} x {h} x {w} = {} (channels x height x width)",
                data.d,
                self.input.len()
            )));
        }
        if data.classes > self.classes {
            return Err(Error::Shape(format!("data has {} classes, the network {}", data.classes, self.classes)));
        }
        Ok(())
    }

    /// What an epoch checks before any batch trains (an error after it would lose its
    /// report): both sets fit the network and neither is empty.
    pub fn check_epoch_data(&self, train: &crate::data::Dataset, val: Option<&crate::data::Dataset>) -> Result<()> {
        for (set, what) in std::iter::once((train, "training")).chain(val.map(|v| (v, "validation"))) {
            self.check_data(set)?;
            if set.is_empty() {
                return Err(Error::Data(format!("the {what} set is empty")));
            }
        }
        Ok(())
    }

    /// Checks a batch of images (`x` is n images, one label each) and returns n: its shape,
    /// its labels, and finite pixels (a NaN would poison every parameter in one step).
    pub fn check_batch<T: crate::real::Real>(&self, x: &[T], labels: &[u32]) -> Result<usize> {
        let d = self.input.len();
        if labels.is_empty() || x.len() != labels.len() * d {
            return Err(Error::Shape(format!(
                "image batch: {} values for {} labels, expected {} ({} x {} x {} per image)",
                x.len(),
                labels.len(),
                labels.len() * d,
                self.input.c,
                self.input.h,
                self.input.w
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= self.classes) {
            return Err(Error::Shape(format!("label {bad} is out of range for {} classes", self.classes)));
        }
        if let Some(k) = x.iter().position(|v| !v.f64().is_finite()) {
            return Err(Error::Data(format!("image {} has a non-finite pixel {}", k / d, x[k].f64())));
        }
        Ok(labels.len())
    }

    /// Every parameter tensor: name, PyTorch shape (docs/IMAGES.md).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (c0, n) = (self.input.c, self.steps);
        let ch = &self.channels;
        let mut t = vec![("opening.weight".into(), vec![ch[0], c0, 3, 3]), ("opening.bias".into(), vec![ch[0]])];
        for (s, &c) in ch.iter().enumerate() {
            t.push((format!("stages.{s}.weight"), vec![n, c, c, 3, 3]));
            t.push((format!("stages.{s}.bias"), vec![n, c]));
        }
        for s in 0..ch.len() - 1 {
            t.push((format!("widen.{s}.weight"), vec![ch[s + 1], ch[s], 1, 1]));
            t.push((format!("widen.{s}.bias"), vec![ch[s + 1]]));
        }
        t.push(("classifier.weight".into(), vec![self.classes, *ch.last().expect("validated")]));
        t.push(("classifier.bias".into(), vec![self.classes]));
        t
    }
}

/// One parameter tensor inside the flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// All parameters in one flat vector (so the optimiser and the gradient reductions are single
/// loops), with the table of where each tensor lies.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageParams<T> {
    pub slots: Vec<Slot>,
    pub data: Vec<T>,
}

impl<T: Real> ImageParams<T> {
    pub fn zeros(cfg: &ImageConfig) -> Self {
        let mut offset = 0;
        let slots = cfg
            .tensors()
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                offset += len;
                Slot { name, shape, offset: offset - len, len }
            })
            .collect();
        ImageParams { slots, data: vec![T::zero(); offset] }
    }

    pub fn zeros_like(&self) -> Self {
        ImageParams { slots: self.slots.clone(), data: vec![T::zero(); self.data.len()] }
    }

    /// Weights ~ N(0, 1/fan_in) (fan_in = c_in x 3 x 3 for the 3x3 kernels, c_in for the 1x1
    /// widening and the classifier), biases 0; drawn tensor by tensor in [`ImageConfig::tensors`]
    /// order.
    pub fn init(cfg: &ImageConfig, seed: u64) -> Self {
        let mut p = Self::zeros(cfg);
        let mut rng = Rng::new(seed);
        for slot in &p.slots {
            if slot.name.ends_with(".bias") {
                continue;
            }
            // [.., c_in, kh, kw] for the kernels, [C, c] for the classifier.
            let fan_in: usize = match slot.shape.len() {
                2 => slot.shape[1],
                r => slot.shape[r - 3..].iter().product(),
            };
            let std = 1.0 / (fan_in as f64).sqrt();
            for v in &mut p.data[slot.offset..slot.offset + slot.len] {
                *v = T::c(std * rng.normal());
            }
        }
        p
    }

    pub fn slot(&self, name: &str) -> &Slot {
        self.slots.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no parameter tensor {name}"))
    }

    pub fn get(&self, name: &str) -> &[T] {
        let s = self.slot(name);
        &self.data[s.offset..s.offset + s.len]
    }

    pub fn get_mut(&mut self, name: &str) -> &mut [T] {
        let (o, l) = {
            let s = self.slot(name);
            (s.offset, s.len)
        };
        &mut self.data[o..o + l]
    }

    pub fn cast<U: Real>(&self) -> ImageParams<U> {
        ImageParams { slots: self.slots.clone(), data: self.data.iter().map(|x| U::c(x.f64())).collect() }
    }

    /// Checks that the tensors are those of `cfg` (names and shapes).
    pub fn check_shape(&self, cfg: &ImageConfig) -> Result<()> {
        let want = cfg.tensors();
        let have: Vec<_> = self.slots.iter().map(|s| (s.name.clone(), s.shape.clone())).collect();
        if want != have {
            let diff = want.iter().zip(&have).find(|(a, b)| a != b);
            return Err(Error::Shape(match diff {
                Some((a, b)) => format!("parameter {} has shape {:?}, the network needs {} {:?}", b.0, b.1, a.0, a.1),
                None => format!("{} parameter tensors, the network needs {}", have.len(), want.len()),
            }));
        }
        // The table must tile the flat vector: each slot where the last ended, as long as its
        // shape, and nothing after (hand-built parameters are read through it, unchecked).
        let mut end = 0;
        for s in &self.slots {
            if s.offset != end || s.len != s.shape.iter().product::<usize>() {
                return Err(Error::Shape(format!(
                    "parameter {} lies at {}..{}, the table needs it at {end} with {} values",
                    s.name,
                    s.offset,
                    s.offset + s.len,
                    s.shape.iter().product::<usize>()
                )));
            }
            end += s.len;
        }
        if self.data.len() != end {
            return Err(Error::Shape(format!("{} parameter values, the network needs {end}", self.data.len())));
        }
        Ok(())
    }

    /// Depth prolongation (MODEL.md section 6) of every stage: N -> 2N steps at h/2.
    pub fn prolongate(&self, cfg: &ImageConfig) -> (ImageConfig, ImageParams<T>) {
        let mut fine = cfg.clone();
        fine.steps *= 2;
        let mut q = ImageParams::zeros(&fine);
        for slot in &self.slots {
            let src = &self.data[slot.offset..slot.offset + slot.len];
            let out = if slot.name.starts_with("stages.") {
                crate::multilevel::interpolate(src, cfg.steps, slot.len / cfg.steps)
            } else {
                src.to_vec()
            };
            q.get_mut(&slot.name).copy_from_slice(&out);
        }
        (fine, q)
    }
}
