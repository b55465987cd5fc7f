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
pub mod tune;
pub mod validate;

pub use device::{DeviceRequest, Gpu};
pub use engine::{GpuNet, Hyper};
pub use image::{GpuImageTrainer, ImageStage, StageSpec};
pub use kernels::{KernelOptions, RuntimeChecks, StepKernels, TiledTuning};
pub use trainer::GpuTrainer;
pub use tune::Tuning;

/// An engine error as the library's: one the engine passed on from `stablenet_core` (a
/// parameter shape, bad data, an optimiser setting) keeps its kind; the rest are the device's.
pub(crate) fn core_error(e: anyhow::Error) -> stablenet_core::Error {
    e.downcast::<stablenet_core::Error>().unwrap_or_else(|e| stablenet_core::Error::Device(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use stablenet_core::Error;

    /// The library's kinds survive the engine's anyhow errors; anything else is the device's,
    /// with its whole chain in the message.
    #[test]
    fn core_errors_keep_their_kind() {
        let shape = super::core_error(Error::Shape("data has d = 3 but the model expects 2".into()).into());
        assert!(matches!(&shape, Error::Shape(m) if m.contains("d = 3")), "{shape:?}");
        let data = super::core_error(anyhow::Error::from(Error::Data("sample 1 is NaN".into())));
        assert!(matches!(data, Error::Data(_)), "{data:?}");
        let device = super::core_error(anyhow::anyhow!("lost").context("reading back"));
        assert!(matches!(&device, Error::Device(m) if m == "reading back: lost"), "{device:?}");
    }
}
