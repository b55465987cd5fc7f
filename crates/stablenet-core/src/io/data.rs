//! Data files: `x` (F32, [n, d]) and `labels` ([n]; I64, I32 or U8).
use super::bare;
use super::raw::{self, RawFile};
use crate::data::Dataset;
use crate::error::{Error, Result};
use safetensors::Dtype;
use std::path::Path;

/// The most classes a data file's labels may make when the file does not say (labels past it
/// are taken for a mistake, e.g. ids instead of class indices).
pub const MAX_CLASSES: usize = 1 << 16;

/// Reads a labelled data set. With `classes = Some(c)` every label must be below c;
/// with `None` the number of classes is the largest label + 1.
pub fn load_data(path: &Path, classes: Option<usize>) -> Result<Dataset> {
    let bytes = raw::read(path)?;
    let file = RawFile::parse(path, &bytes)?;
    let err = |m: String| Error::file(path, m);

    let x_info = file.need("x")?;
    if x_info.dtype != Dtype::F32 {
        return Err(err(format!(
            "tensor x has dtype {}; only F32 is accepted (convert with .astype(np.float32) or \
             .float())",
            x_info.dtype
        )));
    }
    let [n, d] = x_info.shape[..] else {
        return Err(err(format!("tensor x has shape {:?}, expected 2 dimensions [n, d]", x_info.shape)));
    };
    if n == 0 || d == 0 {
        return Err(err(format!("tensor x has shape [{n}, {d}]: no samples or no features")));
    }

    let l_info = file.need("labels")?;
    if l_info.shape != [n] {
        return Err(err(format!(
            "tensor labels has shape {:?}, expected [{n}] (one label per row of x)",
            l_info.shape
        )));
    }
    let lb = file.bytes("labels")?;
    let wide: Vec<i64> = match l_info.dtype {
        Dtype::I64 => lb.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        Dtype::I32 => lb.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect(),
        Dtype::U8 => lb.iter().map(|&b| b as i64).collect(),
        other => {
            return Err(err(format!("tensor labels has dtype {other}; accepted are I64, I32 and U8")));
        }
    };
    let mut labels = Vec::with_capacity(n);
    for (i, &l) in wide.iter().enumerate() {
        let l = u32::try_from(l).map_err(|_| {
            let why = if l < 0 { "negative" } else { "too large" };
            err(format!("label {l} of sample {i} is {why} (labels are 0-based class indices)"))
        })?;
        labels.push(l);
    }
    let classes = match classes {
        Some(c) => c,
        None => {
            // The classifier gets a row per class: one stray label (a row index, an id) must
            // be an error, not a model of 16 GB.
            let (i, &top) = labels.iter().enumerate().max_by_key(|&(i, l)| (l, std::cmp::Reverse(i))).expect("n > 0");
            if top as usize >= MAX_CLASSES {
                return Err(err(format!(
                    "label {top} of sample {i} would make {} classes; labels are 0-based class indices, \
                     at most {MAX_CLASSES} classes",
                    top as u64 + 1
                )));
            }
            top as usize + 1
        }
    };
    let ds = Dataset { x: file.f32s("x")?, labels, d, classes };
    // Dataset::validate names the first label >= classes and the first non-finite sample.
    ds.validate().map_err(|e| err(bare(e)))?;
    Ok(ds)
}
