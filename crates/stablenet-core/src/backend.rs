//! One interface for every backend: the CPU reference ([`crate::Trainer`]) and the GPU engine
//! (`stablenet-gpu`) train the same model the same way behind it.
use crate::config::ModelConfig;
use crate::data::Dataset;
use crate::error::Result;
use crate::params::Params;
use crate::real::Real;
use crate::train::{EpochReport, Trainer};

pub trait Backend {
    /// Where it computes: the CPU, or the adapter's name, graphics backend and driver.
    fn device(&self) -> String;

    fn config(&self) -> &ModelConfig;

    /// One optimiser step on a batch given as slices (`x` is n x d row-major).
    fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<()>;

    /// One pass over `train` in a fresh shuffled order (the same order on every backend for
    /// the same seed), then metrics; `on_batch(done, total)` reports progress.
    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochReport>;

    /// The current parameters (read back from the device where there is one).
    fn params(&self) -> Result<Params<f32>>;

    /// Epochs completed.
    fn epochs_done(&self) -> usize;
}

impl<T: Real> Backend for Trainer<T> {
    fn device(&self) -> String {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        format!("CPU reference ({} bits, 1 of {threads} threads)", 8 * std::mem::size_of::<T>())
    }

    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<()> {
        Trainer::step(self, x, labels).map(|_| ())
    }

    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochReport> {
        Trainer::run_epoch(self, train, val, |done, total, _| on_batch(done, total))
    }

    fn params(&self) -> Result<Params<f32>> {
        Ok(self.params.cast())
    }

    fn epochs_done(&self) -> usize {
        self.epoch()
    }
}
