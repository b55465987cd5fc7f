//! Mini-batch training of an image network on the CPU: the batch order, optimiser and
//! checkpoint state of the dense trainer ([`crate::train`]), over the flat image parameters.
use super::{ImageConfig, ImageEval, ImageNet, ImageParams};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::optim::{OptimizerKind, update};
use crate::train::{EpochReport, Progress, Tally, drive_epoch, epoch_order};

pub struct ImageTrainer {
    pub net: ImageNet,
    pub params: ImageParams<f32>,
    pub batch_size: usize,
    pub seed: u64,
    /// Threads (0: all the machine has); results do not depend on it.
    pub threads: usize,
    kind: OptimizerKind,
    /// SGD: [velocity]; Adam: [m, v]; flat like the parameters.
    bufs: Vec<Vec<f32>>,
    t: u64,
    at: Progress,
    grad: ImageParams<f32>,
    partials: Vec<(f64, usize, Vec<f32>)>,
}

impl ImageTrainer {
    pub fn new(
        cfg: &ImageConfig,
        params: ImageParams<f32>,
        kind: OptimizerKind,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let net = ImageNet::new(cfg)?;
        params.check_shape(cfg)?;
        kind.validate()?;
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let nbufs = if matches!(kind, OptimizerKind::Adam { .. }) { 2 } else { 1 };
        Ok(ImageTrainer {
            net,
            bufs: vec![vec![0.0; params.data.len()]; nbufs],
            grad: params.zeros_like(),
            params,
            batch_size,
            seed,
            threads: 0,
            kind,
            t: 0,
            at: Progress::default(),
            partials: Vec::new(),
        })
    }

    pub fn device(&self) -> String {
        let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let t = if self.threads == 0 { all } else { self.threads.min(all) };
        format!("CPU ({t} of {all} threads)")
    }

    pub fn position(&self) -> (usize, usize) {
        self.at.position()
    }

    /// Continue from a checkpoint's position (with no running sums: see [`Self::set_tally`]).
    pub fn set_position(&mut self, epoch: usize, next_batch: usize) {
        self.at.set_position(epoch, next_batch)
    }

    /// The running sums of the epoch in progress ([`Tally`]).
    pub fn tally(&self) -> Tally {
        self.at.tally
    }

    /// Restores a checkpoint's running sums, after [`Self::set_position`].
    pub fn set_tally(&mut self, tally: Tally) -> Result<()> {
        self.at.set_tally(tally)
    }

    pub fn lr(&self) -> f64 {
        self.kind.lr()
    }

    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.kind = self.kind.with_lr(lr)?;
        Ok(())
    }

    pub fn steps_taken(&self) -> u64 {
        self.t
    }

    /// Checks that a data set holds images of the network's input shape.
    pub fn check_data(&self, data: &Dataset) -> Result<()> {
        self.net.cfg.check_data(data)
    }

    /// One optimiser step; returns (mean loss, correct).
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<(f64, usize)> {
        let (loss, correct) =
            self.net.loss_grad_into(&self.params, x, labels, self.threads, &mut self.partials, &mut self.grad)?;
        let what = if !loss.is_finite() {
            Some(format!("the loss became {loss}"))
        } else {
            self.grad.data.iter().any(|g| !g.is_finite()).then(|| format!("the gradient overflowed (loss {loss})"))
        };
        if let Some(what) = what {
            return Err(Error::Data(format!(
                "{what} in epoch {}: the training diverged. Lower the learning rate or the final time, \
                 or use more steps per stage.",
                self.at.epoch + 1
            )));
        }
        self.t += 1;
        let (b0, b1) = self.bufs.split_at_mut(1);
        update(
            self.kind,
            self.t,
            &mut self.params.data,
            &self.grad.data,
            &mut b0[0],
            b1.first_mut().map(|b| &mut b[..]),
        );
        Ok((loss, correct))
    }

    /// One pass over `train` in the epoch's order ([`epoch_order`]) from the current position,
    /// then the validation metrics.
    pub fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        mut on_batch: impl FnMut(usize, usize, f64) -> bool,
    ) -> Result<EpochReport> {
        self.net.cfg.check_epoch_data(train, val)?;
        let start = std::time::Instant::now();
        let order = epoch_order(self.seed, self.at.epoch, train.len());
        let (bs, from, mut tally) = (self.batch_size, self.at.next_batch, self.at.tally);
        let pass = drive_epoch(
            train,
            &order,
            bs,
            from,
            &mut tally,
            |b, x, labels| {
                let r = self.step(x, labels)?;
                self.at.next_batch = b + 1;
                Ok(r)
            },
            &mut on_batch,
        );
        self.at.tally = tally; // the batches trained, also when one failed
        let complete = pass?;
        let sums = self.at.end_pass(complete, start.elapsed().as_secs_f64());
        let v = match val.filter(|_| complete) {
            Some(v) => Some(self.evaluate(v)?),
            None => None,
        };
        let v = v.map(|v| (v.loss, v.accuracy));
        Ok(sums.report(self.at.epoch, self.t, v, self.kind.lr(), complete))
    }

    pub fn evaluate(&self, data: &Dataset) -> Result<ImageEval> {
        self.check_data(data)?;
        self.net.evaluate(&self.params, &data.x, &data.labels, self.threads)
    }

    fn prefixes(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Sgd { .. } => &["optim.velocity"],
            OptimizerKind::Adam { .. } => &["optim.adam_m", "optim.adam_v"],
        }
    }

    /// Optimiser state as tensors, named as the dense optimiser names them
    /// (`optim.adam_m.<tensor>`, ..., `optim.t`).
    pub fn optimizer_state(&self) -> Vec<crate::io::Tensor> {
        let mut out = Vec::new();
        for (prefix, buf) in self.prefixes().iter().zip(&self.bufs) {
            for s in &self.params.slots {
                let v = buf[s.offset..s.offset + s.len].to_vec();
                out.push(crate::io::Tensor::new(format!("{prefix}.{}", s.name), s.shape.clone(), v));
            }
        }
        out.push(crate::io::Tensor::new("optim.t".to_string(), vec![1], vec![self.t as f32]));
        out
    }

    /// Restores [`ImageTrainer::optimizer_state`]; a missing or mis-shaped tensor is an error and
    /// changes nothing.
    pub fn load_optimizer_state(&mut self, tensors: &[crate::io::Tensor]) -> Result<()> {
        let find = |name: &str| tensors.iter().find(|t| t.name == name);
        let bad = |m: String| Err(Error::Shape(format!("optimizer state ({}): {m}", self.kind.name())));
        let mut bufs = self.bufs.clone();
        for (prefix, buf) in self.prefixes().iter().zip(bufs.iter_mut()) {
            for s in &self.params.slots {
                let name = format!("{prefix}.{}", s.name);
                match find(&name) {
                    Some(t) if t.shape == s.shape && t.data.len() == s.len => {
                        buf[s.offset..s.offset + s.len].copy_from_slice(&t.data)
                    }
                    Some(t) => return bad(format!("{name} has shape {:?}, expected {:?}", t.shape, s.shape)),
                    None => return bad(format!("missing tensor {name}")),
                }
            }
        }
        let t = match find("optim.t") {
            Some(t) if t.data.len() == 1 && t.data[0] >= 0.0 && t.data[0].fract() == 0.0 => t.data[0] as u64,
            _ => return bad("optim.t is missing or not a whole number".into()),
        };
        self.bufs = bufs;
        self.t = t;
        Ok(())
    }
}
