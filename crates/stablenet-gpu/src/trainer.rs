//! Training on the GPU behind the same [`Backend`] interface as the CPU reference: the data
//! set stays on the device, each epoch uploads only its shuffled order (the same order the CPU
//! trainer draws from the same seed), each step is one submit, and losses and hit counts come
//! back once per epoch.
use crate::device::Gpu;
use crate::engine::{GpuNet, Hyper};
use stablenet_core::backend::Backend;
use stablenet_core::data::Dataset;
use stablenet_core::{EpochReport, Error, ModelConfig, Params, Result, Rng, TrainConfig, evaluate};

pub struct GpuTrainer {
    net: GpuNet,
    tc: TrainConfig,
    rng: Rng,
    epoch: usize,
    /// Which data set is resident: (address, length) of the one last uploaded.
    resident: Option<(usize, usize)>,
    capacity: usize,
}

fn gpu_err(e: anyhow::Error) -> Error {
    Error::Device(format!("{e:#}"))
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
        tc.validate()?;
        params.check_shape(&cfg)?;
        let hyper = Hyper { optimizer: tc.optimizer, regularizer: tc.regularizer };
        let capacity = data_capacity.max(tc.batch_size);
        let net = GpuNet::new(gpu, &cfg, tc.batch_size, capacity, Some(hyper)).map_err(gpu_err)?;
        net.set_params(params).map_err(gpu_err)?;
        let rng = Rng::new(tc.seed);
        Ok(GpuTrainer { net, tc, rng, epoch: 0, resident: None, capacity })
    }

    pub fn net(&self) -> &GpuNet {
        &self.net
    }

    fn upload(&mut self, data: &Dataset) -> Result<()> {
        let id = (data.x.as_ptr() as usize, data.len());
        if self.resident != Some(id) {
            if data.len() > self.capacity {
                return Err(Error::Data(format!(
                    "data set of {} examples exceeds the device capacity of {} chosen at construction",
                    data.len(),
                    self.capacity
                )));
            }
            self.net.set_data(data).map_err(gpu_err)?;
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
        self.net.set_data(&batch).map_err(gpu_err)?;
        self.net.train_step(0, labels.len(), 0).map_err(gpu_err)?;
        let loss = self.net.losses(1).map_err(gpu_err)?[0];
        if !loss.is_finite() {
            return Err(Error::Data(format!("the loss became {loss}: the training diverged")));
        }
        Ok(())
    }

    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochReport> {
        let cfg = self.net.cfg.clone();
        if train.d != cfg.d || train.classes > cfg.classes {
            return Err(Error::Shape(format!(
                "data has d = {}, {} classes; the model has d = {}, {} classes",
                train.d, train.classes, cfg.d, cfg.classes
            )));
        }
        if train.is_empty() {
            return Err(Error::Data("the training set is empty".into()));
        }
        let start = std::time::Instant::now();
        self.upload(train)?;
        let n = train.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        self.rng.shuffle(&mut order);
        self.net.set_order(&order).map_err(gpu_err)?;
        let bs = self.tc.batch_size;
        let total = n.div_ceil(bs);
        for b in 0..total {
            let len = bs.min(n - b * bs);
            self.net.train_step(b * bs, len, b as u32).map_err(gpu_err)?;
            on_batch(b + 1, total);
        }
        let losses = self.net.losses(total).map_err(gpu_err)?;
        let hits = self.net.hits(total).map_err(gpu_err)?;
        self.epoch += 1;
        let mut loss_sum = 0.0;
        for (b, l) in losses.iter().enumerate() {
            if !l.is_finite() {
                return Err(Error::Data(format!(
                    "the loss became {l} at epoch {}, batch {}: the training diverged. Lower the \
                     learning rate, or use more steps (smaller h) or a stable integrator.",
                    self.epoch,
                    b + 1
                )));
            }
            loss_sum += f64::from(*l) * bs.min(n - b * bs) as f64;
        }
        let correct: f64 = hits.iter().map(|h| f64::from(*h)).sum();
        let (val_loss, val_acc) = match val {
            Some(v) => {
                let e = evaluate(&cfg, &self.params()?, &v.x, &v.labels)?;
                (Some(e.loss), Some(e.accuracy))
            }
            None => (None, None),
        };
        Ok(EpochReport {
            epoch: self.epoch,
            steps: u64::from(self.net.steps_taken()),
            train_loss: loss_sum / n as f64,
            train_acc: correct / n as f64,
            val_loss,
            val_acc,
            seconds: start.elapsed().as_secs_f64(),
            lr: self.tc.optimizer.lr(),
        })
    }

    fn params(&self) -> Result<Params<f32>> {
        self.net.params().map_err(gpu_err)
    }

    fn epochs_done(&self) -> usize {
        self.epoch
    }
}
