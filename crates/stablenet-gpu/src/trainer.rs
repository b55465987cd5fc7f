//! Training on the GPU behind the same [`Backend`] interface as the CPU reference: the data
//! set stays on the device, each epoch uploads only its shuffled order (the same order the CPU
//! trainer draws from the same seed), each step is one submit, and losses and hit counts come
//! back once per epoch.
use crate::core_error;
use crate::device::Gpu;
use crate::engine::{GpuNet, Hyper};
use crate::kernels::{KernelOptions, TiledTuning};
use crate::tune::{self, Tuning};
use stablenet_core::backend::Backend;
use stablenet_core::data::Dataset;
use stablenet_core::io::Tensor;
use stablenet_core::optim::{Optimizer, OptimizerKind};
use stablenet_core::train::{Progress, Tally, check_position, check_set, check_setup, epoch_order};
use stablenet_core::{EpochReport, Error, GradMethod, ModelConfig, Params, Result, TrainConfig, evaluate};

pub struct GpuTrainer {
    net: GpuNet,
    tc: TrainConfig,
    at: Progress,
    /// Which data set is resident: the [`fingerprint`] of the one last uploaded.
    resident: Option<u64>,
    capacity: usize,
}

/// What identifies a data set for its resident copy on the device: a hash of its shape,
/// values and labels, once per epoch (SipHash: MNIST's 188 MB in ~50 ms on one CPU core,
/// beside seconds of training). Address and length served before, and a data set refilled in
/// place, or allocated where a freed one of the same length was, trained on the stale copy.
pub(crate) fn fingerprint(data: &Dataset) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write_usize(data.d);
    h.write_usize(data.classes);
    h.write_usize(data.len());
    h.write(bytemuck::cast_slice(&data.x));
    h.write(bytemuck::cast_slice(&data.labels));
    h.finish()
}

impl GpuTrainer {
    /// `data_capacity`: the largest data set `run_epoch` will be given (it stays on the device).
    pub fn new(
        gpu: Gpu,
        cfg: ModelConfig,
        params: &Params<f32>,
        tc: TrainConfig,
        data_capacity: usize,
    ) -> Result<Self> {
        let opts = Self::default_options(tc.method);
        Self::with_options(gpu, cfg, params, tc, data_capacity, opts)
    }

    /// [`GpuTrainer::new`] with the step kernels that trained fastest on this adapter, for
    /// this model and batch size ([`crate::tune`]: a few steps of each candidate on a synthetic
    /// batch; most of its time is building them). What was timed and chosen comes back beside
    /// it.
    pub fn tuned(
        gpu: Gpu,
        cfg: ModelConfig,
        params: &Params<f32>,
        tc: TrainConfig,
        data_capacity: usize,
    ) -> Result<(Self, Tuning)> {
        check_setup(&cfg, params, &tc)?;
        let hyper = Hyper { optimizer: tc.optimizer, regularizer: tc.regularizer };
        let base = Self::default_options(tc.method);
        let n = tc.batch_size.min(data_capacity.max(1));
        let mut tuning = tune::tune(&gpu, &cfg, params, tc.batch_size, n, hyper, base).map_err(core_error)?;
        // The trials held one batch; the trainer also holds the whole data set. Where the
        // chosen setting's larger buffers (more partial sums) no longer fit beside it, the
        // default may: the table then says so.
        let opts = tuning.options();
        let built = tune::captured(&gpu, || {
            Self::with_options(gpu.clone(), cfg.clone(), params, tc.clone(), data_capacity, opts)
                .map_err(anyhow::Error::from)
        });
        let t = match built {
            Ok(t) => t,
            Err(e) if tuning.chosen != 0 && tuning.trials[0].seconds.is_ok() => {
                let chosen = &mut tuning.trials[tuning.chosen];
                chosen.seconds = Err(format!("fastest, but not built beside the data set: {e:#}"));
                tuning.chosen = 0;
                Self::with_options(gpu, cfg, params, tc, data_capacity, tuning.options())?
            }
            Err(e) => return Err(core_error(e)),
        };
        let (built, chosen) = (t.net.plan(), &tuning.trials[tuning.chosen]);
        if built != chosen.plan {
            return Err(Error::Device(format!(
                "kernel tuning chose {} but the trainer built {built:?}",
                chosen.setting
            )));
        }
        Ok((t, tuning))
    }

    /// [`GpuTrainer::new`] with the step kernels set as `opts` says, e.g. a setting kernel
    /// tuning chose before ([`Tuning::options`]), without tuning again. `opts.tiled.keep` keeps
    /// the pre-activations whatever the gradient method.
    pub fn with_options(
        gpu: Gpu,
        cfg: ModelConfig,
        params: &Params<f32>,
        tc: TrainConfig,
        data_capacity: usize,
        opts: KernelOptions,
    ) -> Result<Self> {
        check_setup(&cfg, params, &tc)?;
        let hyper = Hyper { optimizer: tc.optimizer, regularizer: tc.regularizer };
        let capacity = data_capacity.max(tc.batch_size);
        let net = GpuNet::with_options(gpu, &cfg, tc.batch_size, capacity, Some(hyper), opts).map_err(core_error)?;
        net.set_params(params).map_err(core_error)?;
        Ok(GpuTrainer { net, tc, at: Progress::default(), resident: None, capacity })
    }

    /// The GPU rebuilds states in reverse time or keeps them as the integrator needs, whatever
    /// the `method`, with one exception: `Stored` has tiled Verlet steps keep their
    /// pre-activations (TiledTuning::keep), PyTorch's count of products for memory that grows
    /// with depth. An impossible method is refused (`check_setup`, the CPU trainer's checks).
    pub fn default_options(method: Option<GradMethod>) -> KernelOptions {
        let keep = method == Some(GradMethod::Stored);
        KernelOptions { tiled: TiledTuning { keep, ..TiledTuning::default() }, ..KernelOptions::default() }
    }

    pub fn net(&self) -> &GpuNet {
        &self.net
    }

    /// Gives the device back (to build the next level's network on it).
    pub fn into_gpu(self) -> Gpu {
        self.net.into_gpu()
    }

    fn upload(&mut self, data: &Dataset) -> Result<()> {
        let id = fingerprint(data);
        if self.resident != Some(id) {
            if data.len() > self.capacity {
                return Err(Error::Data(format!(
                    "data set of {} examples exceeds the device capacity of {} chosen at construction",
                    data.len(),
                    self.capacity
                )));
            }
            self.net.set_data(data).map_err(core_error)?;
            self.resident = Some(id);
        }
        Ok(())
    }
}

impl Backend for GpuTrainer {
    fn device(&self) -> String {
        self.net.gpu().describe()
    }

    fn config(&self) -> &ModelConfig {
        &self.net.cfg
    }

    fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<()> {
        let cfg = &self.net.cfg;
        stablenet_core::network::check_batch(cfg, x, labels)?;
        let batch = Dataset { x: x.to_vec(), labels: labels.to_vec(), d: cfg.d, classes: cfg.classes };
        self.resident = None; // the batch replaces the resident data set
        self.net.set_data(&batch).map_err(core_error)?;
        self.net.train_step(0, labels.len(), 0).map_err(core_error)?;
        let loss = self.net.losses(1).map_err(core_error)?[0];
        if !loss.is_finite() {
            return Err(Error::Data(format!("the loss became {loss}: the training diverged")));
        }
        Ok(())
    }

    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<EpochReport> {
        let cfg = self.net.cfg.clone();
        // Both sets before the epoch trains (the CPU trainer's checks), and the position.
        check_set(&cfg, train, "training")?;
        if let Some(v) = val {
            check_set(&cfg, v, "validation")?;
        }
        let (n, bs) = (train.len(), self.tc.batch_size);
        let total = n.div_ceil(bs);
        check_position(self.at.next_batch, total)?;
        let start = std::time::Instant::now();
        self.upload(train)?;
        let order = epoch_order(self.tc.seed, self.at.epoch, n);
        self.net.set_order(&order).map_err(core_error)?;
        let first = self.at.next_batch;
        let mut complete = true;
        for b in first..total {
            let len = bs.min(n - b * bs);
            self.net.train_step(b * bs, len, b as u32).map_err(core_error)?;
            self.at.next_batch = b + 1;
            if !on_batch(b + 1, total) && b + 1 < total {
                complete = false;
                break;
            }
        }
        let done = self.at.next_batch;
        let losses = self.net.losses(done).map_err(core_error)?;
        let hits = self.net.hits(done).map_err(core_error)?;
        // Before the epoch counts as done: a diverged epoch leaves the position at the batch
        // that diverged, as on the CPU. Hit counts are whole numbers in f32, exact below 2^24.
        let logged = losses.iter().zip(&hits).skip(first).map(|(l, h)| (f64::from(*l), *h as usize));
        if let Some((b, l)) = self.at.add_logged(first, logged, |b| bs.min(n - b * bs)) {
            return Err(Error::Data(format!(
                "the loss became {l} at epoch {}, batch {}: the training diverged. Lower the \
                 learning rate, or use more steps (smaller h) or a stable integrator.",
                self.at.epoch + 1,
                b + 1
            )));
        }
        let sums = self.at.end_pass(complete, start.elapsed().as_secs_f64());
        let val = match val.filter(|_| complete) {
            Some(v) => {
                let e = evaluate(&cfg, &self.params()?, &v.x, &v.labels)?;
                Some((e.loss, e.accuracy))
            }
            None => None,
        };
        Ok(sums.report(self.at.epoch, u64::from(self.net.steps_taken()), val, self.tc.optimizer.lr(), complete))
    }

    fn params(&self) -> Result<Params<f32>> {
        self.net.params().map_err(core_error)
    }

    fn position(&self) -> (usize, usize) {
        self.at.position()
    }

    fn set_position(&mut self, epoch: usize, next_batch: usize) {
        self.at.set_position(epoch, next_batch)
    }

    fn tally(&self) -> Tally {
        self.at.tally
    }

    fn set_tally(&mut self, tally: Tally) -> Result<()> {
        self.at.set_tally(tally)
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        // Checked first (an error, not a rate silently kept), then the device's copy.
        let optimizer = self.tc.optimizer.with_lr(lr)?;
        self.net.set_lr(lr).map_err(core_error)?;
        self.tc.optimizer = optimizer;
        Ok(())
    }

    /// The same tensor names as the CPU optimiser (`stablenet_core::optim`).
    fn optimizer_state(&self) -> Result<Vec<Tensor>> {
        let (m, v, t) = self.net.optimizer_state().map_err(core_error)?;
        let mut out = vec![Tensor::new("optim.t", vec![1], vec![t as f32])];
        let (mp, vp) = (self.net.split_groups(&m), self.net.split_groups(&v));
        let mut push = |prefix: &str, p: &Params<f32>| {
            for (name, vals) in p.groups() {
                out.push(Tensor::new(format!("optim.{prefix}.{name}"), p.group_shape(name), vals.to_vec()));
            }
        };
        match self.tc.optimizer {
            OptimizerKind::Sgd { .. } => push("velocity", &mp),
            OptimizerKind::Adam { .. } => {
                push("adam_m", &mp);
                push("adam_v", &vp);
            }
        }
        Ok(out)
    }

    fn load_optimizer_state(&mut self, tensors: &[Tensor]) -> Result<()> {
        // The CPU optimiser's checks (every tensor present with its shape, nothing foreign,
        // finite values, a whole step count), then its state flattened in parameter order.
        let mut opt = Optimizer::new(self.tc.optimizer, &Params::<f32>::zeros(&self.net.cfg))?;
        let state: Vec<_> = tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.data.clone())).collect();
        opt.load_state(&state)?;
        let loaded = opt.state_tensors();
        let flat = |prefix: &str| -> Vec<f32> {
            let group = |name: &str| loaded.iter().find(|(n, _, _)| *n == format!("optim.{prefix}.{name}"));
            stablenet_core::params::GROUP_NAMES
                .iter()
                .flat_map(|g| group(g).map_or(&[][..], |t| &t.2[..]))
                .copied()
                .collect()
        };
        let (m, v) = match self.tc.optimizer {
            OptimizerKind::Sgd { .. } => {
                let m = flat("velocity");
                let v = vec![0.0; m.len()];
                (m, v)
            }
            OptimizerKind::Adam { .. } => (flat("adam_m"), flat("adam_v")),
        };
        self.net.set_optimizer_state(&m, &v, opt.steps_taken() as u32).map_err(core_error)
    }
}
