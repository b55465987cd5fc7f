//! Data sets of MODEL.md section 8.
use crate::error::{Error, Result};

mod ellipses;
pub mod idx;
mod peaks;
mod swiss_roll;
mod synthetic;

pub use ellipses::ellipses;
pub use idx::{
    DEFAULT_DATA_DIR, IDX_FILE_NAMES, IdxImages, ImageSet, ImageSplit, find_image_files, idx_dataset, image_set_dirs,
    load_idx_pair, load_image_set, load_image_split, parse_idx_images, parse_idx_labels, read_idx_bytes,
    read_idx_images, read_idx_labels,
};
pub use peaks::{PEAKS_CLASSES, PEAKS_GRID, peaks, peaks_class_counts, peaks_f};
pub use swiss_roll::swiss_roll;
pub use synthetic::Synthetic;

/// A labelled data set held in memory: `x` is `n x d` row-major (sample `i` is
/// `x[i*d..(i+1)*d]`, one column of the `d x n` batch of MODEL.md), labels are 0-based.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    pub d: usize,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn sample(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// Rejects inconsistent lengths, labels outside 0..classes and non-finite inputs, naming
    /// the first offending sample.
    pub fn validate(&self) -> Result<()> {
        if self.d == 0 {
            return Err(Error::Data("input dimension d is 0".into()));
        }
        if self.x.len() != self.labels.len() * self.d {
            return Err(Error::Data(format!(
                "x holds {} values but {} labels x d = {} needs {}",
                self.x.len(),
                self.labels.len(),
                self.d,
                self.labels.len() * self.d
            )));
        }
        if let Some(i) = self.labels.iter().position(|&l| l as usize >= self.classes) {
            return Err(Error::Data(format!("label {} of sample {i} is outside 0..{}", self.labels[i], self.classes)));
        }
        if let Some(k) = self.x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!(
                "sample {} has a non-finite input ({}) at feature {}",
                k / self.d,
                self.x[k],
                k % self.d
            )));
        }
        Ok(())
    }

    /// The samples at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            x.extend_from_slice(self.sample(i));
        }
        Dataset { x, labels: idx.iter().map(|&i| self.labels[i]).collect(), d: self.d, classes: self.classes }
    }
}

/// A training and a validation set drawn by one generator.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Dataset,
    pub val: Dataset,
}
