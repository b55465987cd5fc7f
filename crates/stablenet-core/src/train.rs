//! Mini-batch training on the CPU reference: shuffled batches, the exact gradient of
//! J = loss + regularisers (MODEL.md section 5), an optimiser step, metrics per epoch.
use crate::config::ModelConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::network::{GradMethod, Network, evaluate};
use crate::optim::{Optimizer, OptimizerKind};
use crate::params::Params;
use crate::real::Real;
use crate::regularize::Regularizer;
use crate::rng::Rng;

/// How to train (everything but the model's own configuration).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub regularizer: Regularizer,
    /// Seed of the batch shuffling (the initialisation has its own).
    pub seed: u64,
    /// Gradient method; `None` picks [`GradMethod::default_for`].
    pub method: Option<GradMethod>,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        self.optimizer.validate()?;
        self.regularizer.validate()
    }
}

/// Metrics of one epoch. Training loss and accuracy are the running values over the
/// epoch's batches (no extra pass), all of them also in an epoch resumed inside (see
/// [`Tally`]); validation is evaluated after the epoch. `seconds` is the time spent training
/// the epoch's batches, validation not included.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: u64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub seconds: f64,
    pub lr: f64,
    /// False when the epoch was stopped early (a stop request); the trainer's position then
    /// points at the next batch, so the epoch can be resumed exactly.
    pub complete: bool,
}

/// The running sums of the epoch in progress. A trainer keeps them across a stop inside the
/// epoch, and a checkpoint stores them, so that a resumed epoch reports all its batches, as
/// the uninterrupted epoch would have.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// Sum over the batches so far of (mean batch loss x batch length).
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    /// Wall-clock seconds spent in the epoch so far.
    pub seconds: f64,
}

impl Tally {
    /// Adds one batch of `len` examples: its mean loss and its correct predictions. Batches
    /// are added one at a time in order, so a resumed epoch sums in the same order, to the
    /// same bits, as the uninterrupted one.
    pub fn add(&mut self, loss: f64, correct: usize, len: usize) {
        self.loss_sum += loss * len as f64;
        self.correct += correct as u64;
        self.seen += len as u64;
    }

    /// The epoch's report from its sums.
    pub fn report(&self, epoch: usize, steps: u64, val: Option<(f64, f64)>, lr: f64, complete: bool) -> EpochReport {
        let seen = self.seen.max(1) as f64;
        EpochReport {
            epoch,
            steps,
            train_loss: self.loss_sum / seen,
            train_acc: self.correct as f64 / seen,
            val_loss: val.map(|v| v.0),
            val_acc: val.map(|v| v.1),
            seconds: self.seconds,
            lr,
            complete,
        }
    }

    /// Refuses sums that do not belong at batch `next_batch` of an epoch of `n` examples in
    /// batches of `batch_size`: they must count exactly the batches before it.
    pub fn check_at(&self, next_batch: usize, batch_size: usize, n: usize) -> Result<()> {
        self.check()?;
        let want = (next_batch * batch_size).min(n) as u64;
        if self.seen != want {
            return Err(Error::Config(format!(
                "the epoch's running sums count {} examples, but batch {next_batch} of {batch_size} follows {want}",
                self.seen
            )));
        }
        Ok(())
    }

    /// Refuses sums no epoch could have (a corrupt or hand-edited checkpoint).
    pub fn check(&self) -> Result<()> {
        if !(self.loss_sum.is_finite() && self.loss_sum >= 0.0 && self.seconds.is_finite() && self.seconds >= 0.0)
            || self.correct > self.seen
        {
            return Err(Error::Config(format!("the epoch's running sums are impossible: {self:?}")));
        }
        Ok(())
    }
}

/// Where a trainer stands: epochs completed, the next batch of the current epoch, and that
/// epoch's running sums. Every trainer (CPU/GPU, dense/image) keeps one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub next_batch: usize,
    pub tally: Tally,
}

impl Progress {
    /// (epochs completed, next batch of the current epoch).
    pub fn position(&self) -> (usize, usize) {
        (self.epoch, self.next_batch)
    }

    /// A checkpoint's position, with no running sums (see [`Progress::set_tally`]).
    pub fn set_position(&mut self, epoch: usize, next_batch: usize) {
        *self = Progress { epoch, next_batch, tally: Tally::default() };
    }

    /// Adds the batches a device logged, `first` on, in order: (mean loss, correct) each,
    /// batch b of `len(b)` examples. At the first non-finite loss it stops, points at that
    /// batch (the device ran on past it) and returns (batch, loss): the epoch diverged there.
    pub fn add_logged(
        &mut self,
        first: usize,
        logged: impl IntoIterator<Item = (f64, usize)>,
        len: impl Fn(usize) -> usize,
    ) -> Option<(usize, f64)> {
        for (b, (loss, correct)) in (first..).zip(logged) {
            if !loss.is_finite() {
                self.next_batch = b;
                return Some((b, loss));
            }
            self.tally.add(loss, correct, len(b));
        }
        None
    }

    /// Ends a pass over an epoch that took `seconds`: a `complete` epoch counts as done (the
    /// next starts at batch 0 with no sums). Returns the epoch's sums so far.
    pub fn end_pass(&mut self, complete: bool, seconds: f64) -> Tally {
        self.tally.seconds += seconds;
        let sums = self.tally;
        if complete {
            *self = Progress { epoch: self.epoch + 1, next_batch: 0, tally: Tally::default() };
        }
        sums
    }

    /// A checkpoint's running sums, after [`Progress::set_position`]; impossible ones are
    /// refused.
    pub fn set_tally(&mut self, tally: Tally) -> Result<()> {
        tally.check()?;
        self.tally = tally;
        Ok(())
    }
}

/// The example order of epoch `epoch`: a fresh shuffle from a stream that depends only on the
/// seed and the epoch, so an interrupted run resumes with the very same batches, and the CPU
/// and GPU backends see the same order.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mix = (epoch as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Rng::new(seed ^ mix).shuffle(&mut order);
    order
}

/// A model in training: parameters, optimiser state and the position (epoch, batch).
pub struct Trainer<T> {
    /// Fixed at construction (the workspace and optimiser are built for them): read them with
    /// [`Trainer::config`] and [`Trainer::train_config`]. The parameters may be changed.
    cfg: ModelConfig,
    pub params: Params<T>,
    tc: TrainConfig,
    opt: Optimizer<T>,
    at: Progress,
    /// The fast f32 path (blocked, vectorised, threaded; see [`crate::fast`]): used when T is
    /// f32 and no gradient method was asked for. Its results do not depend on the thread count.
    fast: Option<crate::fast::FastWorkspace>,
    pub(crate) threads: usize,
    /// Gradient of the objective, reused from step to step.
    grad: Params<T>,
}

impl<T: Real> Trainer<T> {
    pub fn new(cfg: ModelConfig, params: Params<T>, tc: TrainConfig) -> Result<Self> {
        check_setup(&cfg, &params, &tc)?;
        let opt = Optimizer::new(tc.optimizer, &params)?;
        let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
        let fast = if is_f32 && tc.method.is_none() { Some(crate::fast::FastWorkspace::new(&cfg)?) } else { None };
        let grad = params.zeros_like();
        Ok(Trainer { cfg, params, tc, opt, at: Progress::default(), fast, threads: 0, grad })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// How it trains (batch size, optimiser, regulariser, seed, gradient method); the learning
    /// rate of the optimiser is [`Trainer::optimizer`]'s.
    pub fn train_config(&self) -> &TrainConfig {
        &self.tc
    }

    /// Threads of the fast path (0: all the machine has). Results are the same for any count.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads;
    }

    /// Bytes of the parameter-shaped buffers a step uses beyond the parameters: the gradient,
    /// the optimiser state and the fast path's packed operators and gradient. They grow with
    /// N as the parameters do; everything else a step needs does not (hamiltonian, leapfrog).
    pub fn state_bytes(&self) -> usize {
        let values = self.grad.num_values() + self.opt.state_values();
        values * std::mem::size_of::<T>() + self.fast.as_ref().map_or(0, |ws| ws.param_shaped_bytes())
    }

    /// Bytes of the fast path's buffers that are not parameter-shaped, as allocated so far
    /// (per-thread tile states; see [`crate::fast::FastWorkspace::work_bytes`]); None on
    /// the reference path.
    pub fn work_bytes(&self) -> Option<usize> {
        self.fast.as_ref().map(|ws| ws.work_bytes())
    }

    /// The threads a step on a batch of n examples runs on (the reference path: one).
    pub fn threads_for(&self, n: usize) -> usize {
        self.fast.as_ref().map_or(1, |ws| ws.threads_for(n, self.threads))
    }

    /// The instruction set of the fast path's steps on this CPU ("avx512", "avx2",
    /// "portable"); None on the reference path.
    pub fn instruction_set(&self) -> Option<&'static str> {
        self.fast.as_ref().map(|ws| ws.instruction_set())
    }

    /// Whether steps run on the fast f32 path or the generic reference.
    pub fn uses_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Loss and gradient of the batch into `self.grad` by the fast path; None when it does not
    /// apply (not f32, or an explicit gradient method).
    fn fast_loss_grad(&mut self, x: &[f32], labels: &[u32]) -> Option<Result<(f64, usize)>> {
        use std::any::Any;
        let ws = self.fast.as_mut()?;
        let p = (&self.params as &dyn Any).downcast_ref::<Params<f32>>()?;
        let grad = (&mut self.grad as &mut dyn Any).downcast_mut::<Params<f32>>()?;
        Some(crate::fast::loss_grad_with(ws, &self.cfg, p, x, labels, self.threads).map(|lg| {
            for ((_, g), (_, v)) in grad.groups_mut().into_iter().zip(lg.grad.groups()) {
                g.copy_from_slice(v);
            }
            (f64::from(lg.loss), lg.correct)
        }))
    }

    pub fn epoch(&self) -> usize {
        self.at.epoch
    }

    /// (epochs completed, next batch of the current epoch).
    pub fn position(&self) -> (usize, usize) {
        self.at.position()
    }

    /// Continue from a checkpoint's position (with no running sums: see [`Trainer::set_tally`]).
    pub fn set_position(&mut self, epoch: usize, next_batch: usize) {
        self.at.set_position(epoch, next_batch)
    }

    /// The running sums of the epoch in progress (zero at an epoch's start).
    pub fn tally(&self) -> Tally {
        self.at.tally
    }

    /// Restores a checkpoint's running sums, after [`Trainer::set_position`].
    pub fn set_tally(&mut self, tally: Tally) -> Result<()> {
        self.at.set_tally(tally)
    }

    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.opt
    }

    pub fn optimizer_mut(&mut self) -> &mut Optimizer<T> {
        &mut self.opt
    }

    fn method(&self) -> GradMethod {
        self.tc.method.unwrap_or(GradMethod::default_for(&self.cfg))
    }

    /// Checks that a training set fits the model.
    pub fn check_data(&self, data: &Dataset) -> Result<()> {
        check_set(&self.cfg, data, "training")
    }

    /// One optimiser step on a batch; returns (objective J, loss, correct).
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<(f64, f64, usize)> {
        let (loss, correct) = match self.fast_loss_grad(x, labels) {
            Some(r) => r?,
            None => {
                let lg = Network::new(&self.cfg, &self.params)?.loss_grad(x, labels, self.method())?;
                self.grad = lg.grad;
                (lg.loss.f64(), lg.correct)
            }
        };
        let reg = self.tc.regularizer.add_gradient(&self.params, self.cfg.h(), &mut self.grad);
        let objective = loss + reg.f64();
        // A gradient can overflow under a finite objective; stepping with it would write inf
        // into the parameters (checked over the gradient, a small cost beside the step).
        let what = if !objective.is_finite() {
            Some(format!("the objective became {objective}"))
        } else {
            let finite = self.grad.groups().iter().all(|(_, g)| g.iter().all(|v| v.f64().is_finite()));
            (!finite).then(|| format!("the gradient overflowed (objective {objective})"))
        };
        if let Some(what) = what {
            return Err(Error::Data(format!(
                "{what} at epoch {}: the training diverged. Lower the learning rate, or use more \
                 steps (smaller h) or a stable integrator.",
                self.at.epoch + 1
            )));
        }
        self.opt.step(&mut self.params, &self.grad)?;
        Ok((objective, loss, correct))
    }

    /// One pass over `train` in the epoch's shuffled order ([`epoch_order`]), starting at the
    /// trainer's position; `on_batch(done, total, loss)` is called after each batch and stops
    /// the epoch early by returning false.
    pub fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: impl FnMut(usize, usize, f64) -> bool,
    ) -> Result<EpochReport> {
        self.check_data(train)?;
        // Before the epoch trains, not after: an error then would lose the epoch's report.
        if let Some(v) = val {
            check_set(&self.cfg, v, "validation")?;
        }
        let start = std::time::Instant::now();
        let order = epoch_order(self.tc.seed, self.at.epoch, train.len());
        let (bs, from, mut tally) = (self.tc.batch_size, self.at.next_batch, self.at.tally);
        let pass = drive_epoch(
            train,
            &order,
            bs,
            from,
            &mut tally,
            |b, x, labels| {
                let (_, loss, c) = self.step(x, labels)?;
                self.at.next_batch = b + 1;
                Ok((loss, c))
            },
            on_batch,
        );
        self.at.tally = tally; // the batches trained, also when one failed
        let complete = pass?;
        let sums = self.at.end_pass(complete, start.elapsed().as_secs_f64());
        let val = match val.filter(|_| complete) {
            Some(v) => {
                let e = evaluate(&self.cfg, &self.params, &v.x, &v.labels)?;
                Some((e.loss, e.accuracy))
            }
            None => None,
        };
        Ok(sums.report(self.at.epoch, self.opt.steps_taken(), val, self.opt.lr(), complete))
    }
}

/// What every trainer checks at construction: the configuration, parameters of its shapes
/// and finite, the training settings, and a gradient method the integrator can run.
pub fn check_setup<T: Real>(cfg: &ModelConfig, params: &Params<T>, tc: &TrainConfig) -> Result<()> {
    cfg.validate()?;
    params.check_shape(cfg)?;
    params.check_finite()?;
    tc.validate()?;
    if tc.method == Some(GradMethod::Reverse) && !cfg.integrator.is_reversible() {
        return Err(Error::Config(format!("{} cannot use reverse-time gradients", cfg.integrator)));
    }
    Ok(())
}

/// Checks that a data set (`what`: training or validation) fits the model and is not empty.
pub fn check_set(cfg: &ModelConfig, data: &Dataset, what: &str) -> Result<()> {
    data.validate()?;
    if data.d != cfg.d {
        return Err(Error::Shape(format!(
            "{what} data has input dimension {} but the model expects d = {}",
            data.d, cfg.d
        )));
    }
    if data.classes > cfg.classes {
        return Err(Error::Shape(format!(
            "{what} data has {} classes but the model has {}",
            data.classes, cfg.classes
        )));
    }
    if data.is_empty() {
        return Err(Error::Data(format!("the {what} set is empty")));
    }
    Ok(())
}

/// A position (next batch) inside an epoch of `total` batches, or just past its end.
pub fn check_position(next_batch: usize, total: usize) -> Result<()> {
    if next_batch > total {
        return Err(Error::Config(format!(
            "the position, batch {next_batch}, is past the end of an epoch of {total} batches (was the \
             checkpoint written with another batch size or data set?)"
        )));
    }
    Ok(())
}

/// The batch loop every trainer shares: batches of `order` from batch `from` on, gathered into
/// one reused buffer, `step(batch index, x, labels) -> (mean loss, correct)`, added to the
/// epoch's `tally`, then `on_batch(done, total, loss)`, which stops the pass early by
/// returning false. Returns whether the epoch is complete.
pub fn drive_epoch(
    train: &Dataset,
    order: &[u32],
    batch_size: usize,
    from: usize,
    tally: &mut Tally,
    mut step: impl FnMut(usize, &[f32], &[u32]) -> Result<(f64, usize)>,
    mut on_batch: impl FnMut(usize, usize, f64) -> bool,
) -> Result<bool> {
    let n = order.len();
    if batch_size == 0 {
        return Err(Error::Config("batch size must be at least 1".into()));
    }
    let total = n.div_ceil(batch_size);
    check_position(from, total)?;
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for b in from.min(total)..total {
        let range = b * batch_size..((b + 1) * batch_size).min(n);
        let len = range.len();
        x.clear();
        labels.clear();
        for &i in &order[range] {
            x.extend_from_slice(train.sample(i as usize));
            labels.push(train.labels[i as usize]);
        }
        let (loss, c) = step(b, &x, &labels)?;
        tally.add(loss, c, len);
        if !on_batch(b + 1, total, loss) && b + 1 < total {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Epochs and batch size that train every integrator well on a generated 2-D set with the
/// CLI's default network (width 8, N = 16, T = 5, Adam lr 0.01): the swiss roll is small
/// (513 examples) and needs many small batches; the others converge in fewer epochs.
pub fn default_schedule(data: crate::data::Synthetic) -> (usize, usize) {
    use crate::data::Synthetic;
    match data {
        Synthetic::Peaks => (100, 64),
        Synthetic::Ellipses => (50, 64),
        Synthetic::SwissRoll => (300, 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::config::{Activation, Integrator};
    use crate::data::Synthetic;

    fn setup() -> (ModelConfig, Trainer<f32>, Dataset) {
        let cfg = ModelConfig {
            d: 2,
            width: 4,
            steps: 4,
            final_time: 1.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 2,
        };
        let train = Synthetic::Ellipses.generate(1).train.subset(&(0..100).collect::<Vec<_>>());
        let tc = TrainConfig {
            epochs: 1,
            batch_size: 16,
            optimizer: OptimizerKind::adam(0.01).unwrap(),
            regularizer: Regularizer::default(),
            seed: 1,
            method: None,
        };
        let t = Trainer::new(cfg.clone(), Params::init(&cfg, 1), tc).unwrap();
        (cfg, t, train)
    }

    /// What an embedder can get wrong is an error, not a panic or a silent result: a learning
    /// rate of 0 (the end of a cosine to 0), a position past the epoch's end (a checkpoint of
    /// another batch size), an empty or mismatched validation set (found before the epoch
    /// trains), NaN parameters, and a batch size of 0.
    #[test]
    fn misuse_is_an_error_before_anything_changes() {
        let (cfg, mut t, train) = setup();
        assert!(Backend::set_lr(&mut t, 0.0).is_err() && Backend::set_lr(&mut t, f64::NAN).is_err());
        assert_eq!(t.optimizer().lr(), 0.01, "the rate is kept");
        t.set_position(0, 8); // 100 examples in batches of 16: 7 batches
        let err = t.run_epoch(&train, None, |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("past the end of an epoch of 7 batches"), "{err}");
        t.set_position(0, 7); // just past the last batch: nothing left, complete
        assert!(t.run_epoch(&train, None, |_, _, _| true).unwrap().complete);
        let empty = Dataset { x: vec![], labels: vec![], d: 2, classes: 2 };
        let before = t.position();
        let err = t.run_epoch(&train, Some(&empty), |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("validation set is empty"), "{err}");
        let wide = Dataset { x: vec![0.0; 3], labels: vec![0], d: 3, classes: 2 };
        let err = t.run_epoch(&train, Some(&wide), |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("validation data has input dimension 3"), "{err}");
        assert_eq!(t.position(), before, "nothing trained");
        let mut bad = Params::<f32>::init(&cfg, 1);
        bad.mu[1] = f32::NAN;
        let err = Trainer::new(cfg.clone(), bad.clone(), t.tc.clone()).err().unwrap().to_string();
        assert!(err.contains("NaN or infinity in classifier.bias"), "{err}");
        assert!(crate::evaluate(&cfg, &bad, &train.x, &train.labels).is_err());
        let order: Vec<u32> = (0..100).collect();
        let mut tally = Tally::default();
        let err = drive_epoch(&train, &order, 0, 0, &mut tally, |_, _, _| Ok((0.0, 0)), |_, _, _| true).err().unwrap();
        assert!(err.to_string().contains("batch size"), "{err}");
        // Running sums no epoch could have (a corrupt checkpoint) are refused and not kept.
        t.set_position(0, 2);
        let fine = Tally { loss_sum: 20.0, correct: 30, seen: 32, seconds: 0.5 };
        t.set_tally(fine).unwrap();
        for bad in
            [Tally { correct: 33, ..fine }, Tally { loss_sum: f64::NAN, ..fine }, Tally { seconds: -1.0, ..fine }]
        {
            assert!(t.set_tally(bad).unwrap_err().to_string().contains("impossible"), "{bad:?}");
        }
        assert_eq!(t.tally(), fine);
        // At batch 2 of 16-example batches the sums count 32 examples, no more or fewer.
        assert!(fine.check_at(2, 16, 100).is_ok());
        assert!(fine.check_at(3, 16, 100).unwrap_err().to_string().contains("count 32 examples"));
        assert!(Tally { seen: 100, correct: 90, ..fine }.check_at(7, 16, 100).is_ok(), "the last, short batch");
        let other = ModelConfig { width: 5, ..cfg };
        assert!(crate::multilevel::prolongate(&other, &t.params).is_err());
    }
}
