//! One interface for every backend: the CPU reference ([`crate::Trainer`]) and the GPU engine
//! (`stablenet-gpu`) train the same model the same way behind it.
use crate::config::ModelConfig;
use crate::data::Dataset;
use crate::error::Result;
use crate::io::Tensor;
use crate::params::Params;
use crate::real::Real;
use crate::train::{EpochReport, Tally, Trainer};

pub trait Backend {
    /// Where it computes: the CPU, or the adapter's name, graphics backend and driver.
    fn device(&self) -> String;

    fn config(&self) -> &ModelConfig;

    /// One optimiser step on a batch given as slices (`x` is n x d row-major). The GPU
    /// engine takes at most the batch size it was built for (an error beyond it).
    fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<()>;

    /// One pass over `train` in the epoch's shuffled order (the same on every backend for the
    /// same seed, see [`crate::train::epoch_order`]), from the current position, then metrics.
    /// `on_batch(done, total)` reports progress; returning false stops after that batch
    /// (the report says `complete: false` and [`Backend::position`] points at the next one),
    /// unless it was the last, which completes the epoch. Both sets and the position are
    /// checked before any batch trains.
    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<EpochReport>;

    /// The current parameters (read back from the device where there is one).
    fn params(&self) -> Result<Params<f32>>;

    /// (epochs completed, next batch within the current epoch).
    fn position(&self) -> (usize, usize);

    /// Resume from a checkpoint's position; the epoch's running sums start from zero.
    fn set_position(&mut self, epoch: usize, next_batch: usize);

    /// The running sums of the epoch in progress: what a checkpoint inside an epoch stores so
    /// that the resumed epoch reports all its batches ([`Tally`]).
    fn tally(&self) -> Tally;

    /// Restores them, after [`Backend::set_position`]; an error for impossible sums.
    fn set_tally(&mut self, tally: Tally) -> Result<()>;

    /// Changes the learning rate; an error unless it is finite and > 0.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// Optimiser state as tensors under `optim.` (the same names on every backend, so a
    /// checkpoint written by one resumes on the other).
    fn optimizer_state(&self) -> Result<Vec<Tensor>>;

    fn load_optimizer_state(&mut self, tensors: &[Tensor]) -> Result<()>;
}

impl<T: Real> Backend for Trainer<T> {
    fn device(&self) -> String {
        let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if let Some(isa) = self.instruction_set() {
            let t = if self.threads == 0 { all } else { self.threads.min(all) };
            format!("CPU (f32 fast path, {isa}, {t} of {all} threads)")
        } else {
            format!("CPU reference ({} bits, 1 of {all} threads)", 8 * std::mem::size_of::<T>())
        }
    }

    fn config(&self) -> &ModelConfig {
        self.config()
    }

    fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<()> {
        Trainer::step(self, x, labels).map(|_| ())
    }

    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<EpochReport> {
        Trainer::run_epoch(self, train, val, |done, total, _| on_batch(done, total))
    }

    fn params(&self) -> Result<Params<f32>> {
        Ok(self.params.cast())
    }

    fn position(&self) -> (usize, usize) {
        Trainer::position(self)
    }

    fn set_position(&mut self, epoch: usize, next_batch: usize) {
        Trainer::set_position(self, epoch, next_batch)
    }

    fn tally(&self) -> Tally {
        Trainer::tally(self)
    }

    fn set_tally(&mut self, tally: Tally) -> Result<()> {
        Trainer::set_tally(self, tally)
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.optimizer_mut().set_lr(lr)
    }

    fn optimizer_state(&self) -> Result<Vec<Tensor>> {
        let cast = |v: Vec<T>| v.into_iter().map(|x| x.f64() as f32).collect();
        Ok(self.optimizer().state_tensors().into_iter().map(|(n, shape, v)| Tensor::new(n, shape, cast(v))).collect())
    }

    fn load_optimizer_state(&mut self, tensors: &[Tensor]) -> Result<()> {
        let state: Vec<(String, Vec<usize>, Vec<T>)> = tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.data.iter().map(|x| T::c(f64::from(*x))).collect()))
            .collect();
        self.optimizer_mut().load_state(&state)
    }
}
