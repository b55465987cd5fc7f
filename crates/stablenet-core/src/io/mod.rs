//! Model files, data files and gradient files in safetensors (row-major, little-endian f32).
//!
//! The model-file convention is a contract with PyTorch users (`Linear` shapes, out x in):
//!
//! | tensor | shape | meaning |
//! |---|---|---|
//! | `opening.weight` | [w, d] | K_in |
//! | `opening.bias` | [w] | b_in |
//! | `steps.weight` | [N, w, w] | `steps.weight[j]` is K_j, acting as K_j y on a column y |
//! | `steps.bias` | [N, w] | b_j |
//! | `classifier.weight` | [C, w] | W |
//! | `classifier.bias` | [C] | mu |
//!
//! Metadata (strings): `integrator` (resnet|antisym|hamiltonian|leapfrog), `final_time`
//! (decimal), `activation` (tanh|relu), `gamma` (decimal, 0 when absent). d, w, N and C come
//! from the shapes. Other tensors (optimiser state, e.g. under `optim.`) and other metadata
//! keys travel alongside and are handed back by [`load_model`].
//!
//! Data files hold `x` (F32, [n, d]) and `labels` ([n]; I64, I32 or U8). Gradient files are
//! written with [`save_tensors`]: the model tensor names plus `loss`, a scalar of shape [].
//!
//! Every save goes through [`write_atomic`], so a crash never leaves a half-written file.
mod atomic;
mod data;
mod image;
mod model;
mod raw;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub use atomic::write_atomic;
pub use data::load_data;
pub use image::{IMAGE_KEYS, ImageModelFile, is_image_model, load_image_model, save_image_model};
pub use model::{ModelFile, RESERVED_KEYS, load_model, save_model};

/// A named f32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Tensor { name: name.into(), shape, data }
    }
}

/// Writes f32 tensors and a string map (gradient files, checkpoints of anything else).
/// Names must be unique and non-empty; each tensor's data must fill its shape.
pub fn save_tensors(path: &Path, tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let views: Vec<raw::F32Ref<'_>> =
        tensors.iter().map(|t| raw::F32Ref { name: &t.name, shape: &t.shape, data: &t.data }).collect();
    let bytes = raw::encode(path, &views, metadata)?;
    write_atomic(path, &bytes)
}

/// Reads every tensor of a file (all must be F32), sorted by name, and its metadata.
pub fn load_tensors(path: &Path) -> Result<(Vec<Tensor>, BTreeMap<String, String>)> {
    let bytes = raw::read(path)?;
    let file = raw::RawFile::parse(path, &bytes)?;
    let tensors = file
        .names()
        .into_iter()
        .map(|name| {
            let data = file.f32s(&name)?;
            let shape = file.info(&name).map(|i| i.shape.clone()).unwrap_or_default();
            Ok(Tensor { name, shape, data })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tensors, file.metadata()))
}

/// The bare message of a library error, so it can be re-wrapped with the file's path.
fn bare(e: Error) -> String {
    match e {
        Error::Config(m) | Error::Shape(m) | Error::Data(m) => m,
        other => other.to_string(),
    }
}
