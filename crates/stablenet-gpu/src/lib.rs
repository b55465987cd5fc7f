//! stablenet-gpu: the GPU backend of stablenet on wgpu.
//!
//! Every kernel in `shaders/` has a CPU twin in `stablenet-core` and is compared with it on a
//! real adapter (tests, `cargo xtask validate`).
pub mod device;
pub mod engine;
pub mod image;
pub mod kernels;
pub mod shaders;
pub mod trainer;
pub mod validate;

pub use device::{DeviceRequest, Gpu};
pub use engine::{GpuNet, Hyper};
pub use image::{GpuImageTrainer, ImageStage, StageSpec};
pub use kernels::{KernelOptions, RuntimeChecks, StepKernels, TiledTuning};
pub use trainer::GpuTrainer;
