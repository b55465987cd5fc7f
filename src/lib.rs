//! stablenet: stable ODE-inspired deep networks (Haber & Ruthotto, "Stable Architectures for
//! Deep Neural Networks", Inverse Problems 2018).
//!
//! This facade re-exports the engine. See `../shared/spec/MODEL.md` (copied into the README's
//! references) for the mathematics every backend implements.
pub use stablenet_core::*;

/// The GPU backend (wgpu): [`gpu::GpuTrainer`] implements the same [`Backend`] trait as the
/// CPU [`Trainer`].
pub use stablenet_gpu as gpu;
