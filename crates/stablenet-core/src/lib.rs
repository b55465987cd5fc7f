//! stablenet-core: the CPU reference engine of stablenet.
//!
//! The mathematics is `MODEL.md` (kept in the steering repository's `shared/spec/`): the four
//! stable integrators, their adjoints, reverse-time reconstruction, the classifier, the
//! regularisers, multi-level training and the data sets. Everything here is generic over
//! [`Real`] (f32 and f64) and free of GPU dependencies; the GPU backend is checked against it.
pub mod activation;
pub mod backend;
pub mod compare;
pub mod config;
pub mod data;
pub mod diagnostics;
pub mod error;
pub mod experiment;
pub mod fast;
pub mod image;
pub mod integrators;
pub mod io;
pub mod linalg;
pub mod multilevel;
pub mod network;
pub mod optim;
pub mod params;
pub mod real;
pub mod regularize;
pub mod rng;
pub mod stability;
pub mod train;
pub mod trajectory;

pub use backend::Backend;
pub use config::{Activation, Integrator, ModelConfig};
pub use error::{Error, Result};
pub use network::{GradMethod, LossGrad, Network, evaluate, logits, loss_grad};
pub use params::Params;
pub use real::Real;
pub use rng::Rng;
pub use train::{EpochReport, TrainConfig, Trainer};
