//! Experiments as small TOML files (`experiments/*.toml`): everything a training run needs.
//! Every field is optional; a run takes the built-in defaults, then the file, then the
//! command-line flags (`Experiment::over`).
use crate::config::{Activation, Integrator, ModelConfig};
use crate::data::{ImageSet, Synthetic};
use crate::error::{Error, Result};
use crate::image::{ImageConfig, Shape};
use crate::optim::OptimizerKind;
use crate::regularize::Regularizer;
use crate::train::default_schedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: Option<String>,
    /// `peaks`, `ellipses`, `swiss-roll`, or a safetensors data file (`x`, `labels`).
    pub data: Option<String>,
    /// Validation data file (with a data file; the generated sets bring their own).
    pub val_data: Option<String>,
    pub integrator: Option<Integrator>,
    pub activation: Option<Activation>,
    pub width: Option<usize>,
    /// Number of steps N of a single-level run.
    pub steps: Option<usize>,
    /// Multi-level training (MODEL.md section 6): N at each level, each the double of the last.
    pub levels: Option<Vec<usize>>,
    pub final_time: Option<f64>,
    pub gamma: Option<f64>,
    /// `adam` or `sgd`.
    pub optimizer: Option<String>,
    pub lr: Option<f64>,
    /// Cosine decay of the learning rate to this value within each level.
    pub lr_final: Option<f64>,
    pub momentum: Option<f64>,
    /// Epochs per level.
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub alpha_t: Option<f64>,
    pub alpha_w: Option<f64>,
    pub seed: Option<u64>,
    /// Image data (`mnist`, `fashion-mnist`): channels of each stage of the image network
    /// (docs/IMAGES.md); each stage after the first halves the image.
    pub channels: Option<Vec<usize>>,
    /// Image data: the folder `cargo xtask data` fills (default `data`).
    pub data_dir: Option<String>,
    /// Image data: train on the first this many training images only (quick runs, CI).
    pub train_limit: Option<usize>,
    /// Image data: evaluate on the first this many test images only.
    pub val_limit: Option<usize>,
}

/// Where the examples come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    Synthetic(Synthetic),
    /// MNIST or Fashion-MNIST from IDX files in `dir`, optionally only the first images.
    Images {
        set: ImageSet,
        dir: PathBuf,
        train_limit: Option<usize>,
        val_limit: Option<usize>,
    },
    File {
        train: PathBuf,
        val: Option<PathBuf>,
    },
}

/// An experiment with every default filled in and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub data: DataSource,
    pub integrator: Integrator,
    pub activation: Activation,
    pub width: usize,
    pub levels: Vec<usize>,
    pub final_time: f64,
    pub gamma: f64,
    pub optimizer: OptimizerKind,
    pub lr_final: Option<f64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub regularizer: Regularizer,
    pub seed: u64,
    /// Channels per stage (image data only; empty otherwise).
    pub channels: Vec<usize>,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| Error::file(path, e.to_string()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(format!("experiment: {e}")))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an experiment serialises")
    }

    /// `self` with every field that `over` sets replaced. steps and levels replace each other
    /// (a single-level `--steps` over a multi-level file, and the other way round).
    pub fn over(mut self, over: &Experiment) -> Experiment {
        if over.steps.is_some() || over.levels.is_some() {
            (self.steps, self.levels) = (None, None);
        }
        macro_rules! pick {
            ($($f:ident),*) => { Experiment { $($f: over.$f.clone().or(self.$f)),* } };
        }
        pick!(
            name,
            data,
            val_data,
            integrator,
            activation,
            width,
            steps,
            levels,
            final_time,
            gamma,
            optimizer,
            lr,
            lr_final,
            momentum,
            epochs,
            batch_size,
            alpha_t,
            alpha_w,
            seed,
            channels,
            data_dir,
            train_limit,
            val_limit
        )
    }

    /// `self` with its data file, validation file and image folder by absolute path, so that
    /// the experiment a checkpoint or model stores finds them from any folder.
    pub fn with_absolute_files(&self) -> Experiment {
        let absolute = |p: &Option<String>, file: bool| {
            p.clone().map(|v| match std::path::absolute(&v) {
                Ok(a) if !file || v.ends_with(".safetensors") => a.display().to_string(),
                _ => v,
            })
        };
        Experiment {
            data: absolute(&self.data, true),
            val_data: absolute(&self.val_data, true),
            data_dir: absolute(&self.data_dir, false),
            ..self.clone()
        }
    }

    /// Fills in defaults and validates.
    pub fn plan(&self) -> Result<Plan> {
        let data_name = self.data.clone().unwrap_or_else(|| "peaks".into());
        let data = match data_name.parse::<Synthetic>() {
            Ok(s) => DataSource::Synthetic(s),
            Err(_) if data_name.parse::<ImageSet>().is_ok() => DataSource::Images {
                set: data_name.parse()?,
                dir: PathBuf::from(self.data_dir.as_deref().unwrap_or("data")),
                train_limit: self.train_limit,
                val_limit: self.val_limit,
            },
            Err(_) if data_name.ends_with(".safetensors") => {
                DataSource::File { train: PathBuf::from(&data_name), val: self.val_data.as_ref().map(PathBuf::from) }
            }
            Err(_) => {
                let names: Vec<_> = Synthetic::ALL.iter().map(|d| d.name()).collect();
                return Err(Error::Config(format!(
                    "unknown data set '{data_name}'; expected one of: {}, mnist, fashion-mnist (or a .safetensors \
                     data file)",
                    names.join(", ")
                )));
            }
        };
        let images = matches!(data, DataSource::Images { .. });
        // Settings that would change nothing are errors, not silently ignored.
        if self.val_data.is_some() && !matches!(data, DataSource::File { .. }) {
            return Err(Error::Config(format!(
                "val_data is for a training data file; {data_name} brings its own validation set"
            )));
        }
        if images && self.width.is_some() {
            return Err(Error::Config("width is for the 2-D data sets; image networks take channels".into()));
        }
        if !images {
            let image_only = [("channels", self.channels.is_some()), ("data_dir", self.data_dir.is_some())];
            let limits = [("train_limit", self.train_limit.is_some()), ("val_limit", self.val_limit.is_some())];
            if let Some((f, _)) = image_only.iter().chain(&limits).find(|(_, set)| *set) {
                return Err(Error::Config(format!("{f} is for image data (mnist, fashion-mnist), not {data_name}")));
            }
        } else if self.alpha_t.unwrap_or(0.0) != 0.0 || self.alpha_w.unwrap_or(0.0) != 0.0 {
            return Err(Error::Config(
                "the regularisers (alpha_t, alpha_w) are not implemented for image networks".into(),
            ));
        }
        if [self.train_limit, self.val_limit].contains(&Some(0)) {
            return Err(Error::Config("train_limit and val_limit must be at least 1".into()));
        }
        let (default_epochs, default_batch) = match &data {
            DataSource::Synthetic(s) => default_schedule(*s),
            DataSource::File { .. } => (50, 64),
            DataSource::Images { .. } => (10, 128),
        };
        let levels = match (&self.levels, self.steps) {
            (Some(_), Some(_)) => return Err(Error::Config("give either steps or levels, not both".into())),
            (Some(l), None) => {
                let spec = l.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
                crate::multilevel::levels(&spec)?
            }
            (None, s) => vec![s.unwrap_or(if images { 2 } else { 16 })],
        };
        let integrator = self.integrator.unwrap_or(Integrator::Hamiltonian);
        let lr = self.lr.unwrap_or(0.01);
        let optimizer = match self.optimizer.as_deref().unwrap_or("adam") {
            "sgd" => OptimizerKind::sgd(lr, self.momentum.unwrap_or(0.0))?,
            name if self.momentum.is_some() => {
                return Err(Error::Config(format!("momentum is for optimizer = \"sgd\", not {name}")));
            }
            name => OptimizerKind::from_name(name, lr)?,
        };
        if self.gamma.is_some() && integrator != Integrator::Antisym {
            return Err(Error::Config(format!(
                "gamma damps the antisym operator (MODEL.md section 2); the {integrator} integrator has none"
            )));
        }
        if let Some(f) = self.lr_final.filter(|f| !(f.is_finite() && *f > 0.0 && *f <= lr)) {
            return Err(Error::Config(format!("lr_final must be in (0, lr = {lr}], got {f}")));
        }
        let plan = Plan {
            // A data file's stem, not its path, in the default name.
            name: self.name.clone().unwrap_or_else(|| {
                let stem = Path::new(&data_name).file_stem().map(|s| s.to_string_lossy().into_owned());
                format!("{}-{integrator}", stem.unwrap_or(data_name.clone()))
            }),
            data,
            integrator,
            activation: self.activation.unwrap_or(Activation::Tanh),
            width: self.width.unwrap_or(8),
            levels,
            final_time: self.final_time.unwrap_or(if images { 1.0 } else { 5.0 }),
            gamma: if integrator == Integrator::Antisym { self.gamma.unwrap_or(0.05) } else { 0.0 },
            optimizer,
            lr_final: self.lr_final,
            epochs: self.epochs.unwrap_or(default_epochs),
            batch_size: self.batch_size.unwrap_or(default_batch),
            regularizer: Regularizer::new(self.alpha_t.unwrap_or(0.0), self.alpha_w.unwrap_or(0.0))?,
            seed: self.seed.unwrap_or(1),
            channels: if images { self.channels.clone().unwrap_or_else(|| vec![8, 16, 32]) } else { Vec::new() },
        };
        if plan.epochs == 0 || plan.batch_size == 0 {
            return Err(Error::Config("epochs and batch_size must be at least 1".into()));
        }
        if images {
            plan.image_model(0).validate()?;
        } else {
            plan.model(0, 2, 2).validate()?;
        }
        Ok(plan)
    }
}

impl Plan {
    /// The model at level `level` for data of dimension d with C classes.
    pub fn model(&self, level: usize, d: usize, classes: usize) -> ModelConfig {
        ModelConfig {
            d,
            width: self.width,
            steps: self.levels[level],
            final_time: self.final_time,
            integrator: self.integrator,
            activation: self.activation,
            gamma: self.gamma,
            classes,
        }
    }

    /// The image network at level `level` (28 x 28 grey images, 10 classes).
    pub fn image_model(&self, level: usize) -> ImageConfig {
        ImageConfig {
            integrator: self.integrator,
            activation: self.activation,
            input: Shape::new(1, 28, 28),
            channels: self.channels.clone(),
            steps: self.levels[level],
            final_time: self.final_time,
            gamma: self.gamma,
            classes: 10,
        }
    }

    /// Learning rate of epoch `e` (0-based) within a level: constant, or cosine to `lr_final`.
    pub fn lr(&self, e: usize) -> f64 {
        let lr = self.optimizer.lr();
        match self.lr_final {
            None => lr,
            Some(f) => f + 0.5 * (lr - f) * (1.0 + (std::f64::consts::PI * e as f64 / self.epochs as f64).cos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags_layer_in_that_order() {
        let file =
            Experiment::parse("data = \"ellipses\"\nintegrator = \"leapfrog\"\nlevels = [4, 8]\nlr = 0.02\n").unwrap();
        let flags = Experiment { lr: Some(0.05), seed: Some(9), ..Default::default() };
        let plan = Experiment::default().over(&file).over(&flags).plan().unwrap();
        assert_eq!(plan.data, DataSource::Synthetic(Synthetic::Ellipses));
        assert_eq!(plan.integrator, Integrator::Leapfrog);
        assert_eq!(plan.levels, vec![4, 8]);
        assert_eq!((plan.optimizer.lr(), plan.seed, plan.width), (0.05, 9, 8));
        assert_eq!(plan.epochs, default_schedule(Synthetic::Ellipses).0);
        let round = Experiment::parse(&file.to_toml()).unwrap();
        assert_eq!(round, file);
        // A flag's steps replace the file's levels, and its levels the file's steps.
        let steps = Experiment { steps: Some(8), ..Default::default() };
        assert_eq!(file.clone().over(&steps).plan().unwrap().levels, vec![8]);
        let single = Experiment::parse("steps = 8").unwrap();
        let levels = Experiment { levels: Some(vec![4, 8]), ..Default::default() };
        assert_eq!(single.over(&levels).plan().unwrap().levels, vec![4, 8]);
    }

    #[test]
    fn bad_experiments_are_rejected_clearly() {
        for (text, needle) in [
            ("widht = 3", "unknown field"),
            ("levels = [4, 6]", "double"),
            ("steps = 4\nlevels = [4, 8]", "either steps or levels"),
            ("data = \"cifar\"", "peaks"),
            ("lr = -1", "learning rate"),
            ("lr = 0.01\nlr_final = 0.1", "lr_final"),
            ("width = 0", "width"),
            ("integrator = \"rk4\"", "rk4"),
            ("channels = [4, 8]", "for image data"),
            ("data = \"mnist\"\nchannels = [4, 8, 8, 8]", "divisible by 8"),
            ("data = \"mnist\"\nalpha_w = 0.1", "not implemented for image"),
            ("data = \"mnist\"\ntrain_limit = 0", "at least 1"),
            ("data = \"mnist\"\nwidth = 5", "channels"),
            ("val_data = \"v.safetensors\"", "its own validation"),
            ("optimizer = \"adam\"\nmomentum = 0.9", "momentum"),
            ("integrator = \"hamiltonian\"\ngamma = 5", "gamma"),
        ] {
            let err = Experiment::parse(text).and_then(|e| e.plan()).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn cosine_schedule_runs_from_lr_to_lr_final() {
        let plan = Experiment { lr: Some(0.01), lr_final: Some(0.001), epochs: Some(10), ..Default::default() }
            .plan()
            .unwrap();
        assert!((plan.lr(0) - 0.01).abs() < 1e-15);
        assert!((plan.lr(5) - 0.0055).abs() < 1e-12);
        assert!(plan.lr(9) > 0.001 && plan.lr(9) < 0.0013);
    }
}
