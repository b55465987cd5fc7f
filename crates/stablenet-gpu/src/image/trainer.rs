//! Mini-batch training of an image network on the GPU: the API, batch order, optimiser and
//! checkpoint tensors of the CPU trainer (`stablenet_core::image::ImageTrainer`).
//!
//! Parameters, gradient and optimiser state stay on the device. The training set is uploaded
//! once (when it fits one buffer); each epoch writes its labels in the epoch's order, and a
//! step gathers its images with buffer copies, runs forward, backward and the optimiser
//! (`shaders/optim.wgsl`) and logs the batch's mean loss and hits: one encoder, one submit, no
//! readback. The log comes back once per epoch (and at most once a second for the progress).
use super::{GpuImageNet, WG};
use crate::core_error;
use crate::device::{Gpu, describe};
use crate::shaders;
use crate::shaders::BatchInfo;
use crate::trainer::fingerprint;
use stablenet_core::data::Dataset;
use stablenet_core::error::{Error, Result};
use stablenet_core::image::{ImageConfig, ImageEval, ImageParams};
use stablenet_core::io::Tensor;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::train::{EpochReport, Progress, Tally, check_position, epoch_order};
use std::time::{Duration, Instant};

/// The training set on the device: images in data order, labels in the epoch's order.
struct Resident {
    /// The data set's [`fingerprint`].
    id: u64,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
}

pub struct GpuImageTrainer {
    net: GpuImageNet,
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    max_buffer: u64,
    max_groups: u32,
    pub batch_size: usize,
    pub seed: u64,
    kind: OptimizerKind,
    t: u64,
    at: Progress,
    count: usize,
    template: ImageParams<f32>,
    /// SGD velocity | Adam first moment, Adam second moment.
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    batch_info: wgpu::Buffer,
    optim: wgpu::ComputePipeline,
    optim_binds: [wgpu::BindGroup; 2],
    resident: Option<Resident>,
    /// (mean loss, hits) of every batch of the epoch.
    log: wgpu::Buffer,
    log_batches: usize,
}

impl GpuImageTrainer {
    pub fn new(
        gpu: &Gpu,
        cfg: &ImageConfig,
        params: ImageParams<f32>,
        kind: OptimizerKind,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self> {
        params.check_shape(cfg)?;
        kind.validate()?;
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let net = GpuImageNet::new(gpu, cfg, batch_size).map_err(core_error)?;
        net.set_params(&params).map_err(core_error)?;
        let count = params.data.len();
        let dev = &gpu.device;
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buf = |label: &str, bytes: u64, usage| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        // Zeroed at creation (wgpu guarantees it): a fresh optimiser. As large as the
        // parameters, which GpuImageNet::new checked against the binding limit.
        let m = buf("image optimizer m", 4 * count as u64, rw);
        let v = buf("image optimizer v", 4 * count as u64, rw);
        let batch_info = buf(
            "image optimizer batch",
            std::mem::size_of::<BatchInfo>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let (momentum, beta1, beta2, eps) = match kind {
            OptimizerKind::Sgd { momentum, .. } => (momentum, 0.9, 0.999, 1e-8),
            OptimizerKind::Adam { beta1, beta2, eps, .. } => (0.0, beta1, beta2, eps),
        };
        // optim.wgsl sizes the flat vector from the dense shape: W = count, the rest 0.
        let consts: Vec<(&str, f64)> = vec![
            ("WG", WG as f64),
            ("W", count as f64),
            ("D", 0.0),
            ("C", 0.0),
            ("N", 0.0),
            ("H", 1.0),
            ("MOMENTUM", momentum),
            ("BETA1", beta1),
            ("BETA2", beta2),
            ("EPS", eps),
        ];
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("image optim"),
            source: wgpu::ShaderSource::Wgsl(shaders::optim().into()),
        });
        let optim = gpu.compute_pipeline(None, &module, kind.name(), &consts);
        let (p, g, ..) = net.buffers();
        fn entries<'a>(bufs: &[(u32, &'a wgpu::Buffer)]) -> Vec<wgpu::BindGroupEntry<'a>> {
            bufs.iter()
                .map(|&(b, buf)| wgpu::BindGroupEntry { binding: b, resource: buf.as_entire_binding() })
                .collect()
        }
        let storage: Vec<(u32, &wgpu::Buffer)> = match kind {
            OptimizerKind::Sgd { .. } => vec![(0, p), (1, g), (2, &m)],
            OptimizerKind::Adam { .. } => vec![(0, p), (1, g), (2, &m), (3, &v)],
        };
        let optim_binds = [
            dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("image optim"),
                layout: &optim.get_bind_group_layout(0),
                entries: &entries(&storage),
            }),
            dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("image optim batch"),
                layout: &optim.get_bind_group_layout(1),
                entries: &entries(&[(1, &batch_info)]),
            }),
        ];
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!(
                "building the GPU image optimiser failed on {}: {e}",
                describe(&gpu.info)
            )));
        }
        let log = buf("image loss log", 8, rw);
        Ok(GpuImageTrainer {
            net,
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            adapter: describe(&gpu.info),
            max_buffer: gpu.limits.max_buffer_size,
            max_groups: gpu.limits.max_compute_workgroups_per_dimension,
            batch_size,
            seed,
            kind,
            t: 0,
            at: Progress::default(),
            count,
            template: params.zeros_like(),
            m,
            v,
            batch_info,
            optim,
            optim_binds,
            resident: None,
            log,
            log_batches: 1,
        })
    }

    pub fn config(&self) -> &ImageConfig {
        &self.net.cfg
    }

    pub fn device(&self) -> String {
        format!("GPU {}", self.adapter)
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

    /// Queues the optimiser's step-dependent constants of the next step (t counts it).
    fn write_step(&mut self) {
        self.t += 1;
        let info = BatchInfo::optimizer(self.kind, self.t as u32);
        self.queue.write_buffer(&self.batch_info, 0, bytemuck::bytes_of(&info));
    }

    /// Records forward, backward, the optimiser and the log entry `slot` of a batch of n
    /// already in the input buffers, and submits it.
    fn submit_step(&mut self, mut enc: wgpu::CommandEncoder, n: u32, slot: usize) {
        self.net.prepare(n);
        self.net.record(&mut enc, n, true);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("image optim"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.optim);
            pass.set_bind_group(0, &self.optim_binds[0], &[]);
            pass.set_bind_group(1, &self.optim_binds[1], &[]);
            let g = (self.count as u32).div_ceil(WG);
            let x = g.min(self.max_groups);
            pass.dispatch_workgroups(x, g.div_ceil(x), 1);
        }
        self.net.record_stage_params(&mut enc);
        let (.., head) = self.net.buffers();
        let (_, totals, _) = self.net.head_offsets();
        enc.copy_buffer_to_buffer(head, 4 * totals, &self.log, 8 * slot as u64, 8);
        self.queue.submit([enc.finish()]);
    }

    /// One optimiser step on a batch from the host; returns (mean loss, correct). Reads the
    /// loss back (run_epoch does not).
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<(f64, usize)> {
        // The CPU trainer's checks, finite pixels included: the device would train on a NaN.
        self.net.cfg.check_batch(x, labels)?;
        let n = self.net.write_batch(x, labels).map_err(core_error)?;
        self.write_step();
        let enc = self.device.create_command_encoder(&Default::default());
        self.submit_step(enc, n, 0);
        let r = self.read(&self.log, 0, 2)?;
        let loss = f64::from(r[0]);
        if !loss.is_finite() {
            return Err(Error::Data(format!(
                "the loss became {loss} in epoch {}: the training diverged. Lower the learning rate or \
                 the final time, or use more steps per stage.",
                self.at.epoch + 1
            )));
        }
        Ok((loss, r[1] as usize))
    }

    /// Uploads `train` unless it is already on the device (and fits one buffer), then its labels
    /// in the epoch's order. Whether the set is resident.
    fn make_resident(&mut self, train: &Dataset, order: &[u32]) -> bool {
        let bytes = 4 * train.x.len() as u64;
        if bytes > self.max_buffer {
            self.resident = None;
            return false;
        }
        let id = fingerprint(train);
        if self.resident.as_ref().map(|r| r.id) != Some(id) {
            let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
            let buf = |label: &str, bytes: u64| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes.max(4),
                    usage,
                    mapped_at_creation: false,
                })
            };
            self.resident = None; // free the old set first
            let x = buf("image train x", bytes);
            let labels = buf("image train labels", 4 * train.len() as u64);
            self.queue.write_buffer(&x, 0, bytemuck::cast_slice(&train.x));
            self.resident = Some(Resident { id, x, labels });
        }
        let labels: Vec<u32> = order.iter().map(|&i| train.labels[i as usize]).collect();
        let r = self.resident.as_ref().expect("just made resident");
        self.queue.write_buffer(&r.labels, 0, bytemuck::cast_slice(&labels));
        true
    }

    /// A log of at least `batches` entries.
    fn ensure_log(&mut self, batches: usize) {
        if batches > self.log_batches {
            self.log = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("image loss log"),
                size: 8 * batches as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            self.log_batches = batches;
        }
    }

    /// One pass over `train` in the epoch's order ([`epoch_order`], the CPU trainer's batches)
    /// from the current position, then the validation metrics. `on_batch` gets the loss of the
    /// latest batch read back (at most once a second; NaN before the first).
    pub fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        mut on_batch: impl FnMut(usize, usize, f64) -> bool,
    ) -> Result<EpochReport> {
        self.net.cfg.check_epoch_data(train, val)?;
        let start = Instant::now();
        let n = train.len();
        let order = epoch_order(self.seed, self.at.epoch, n);
        let bs = self.batch_size;
        let total = n.div_ceil(bs);
        check_position(self.at.next_batch, total)?;
        let first = self.at.next_batch;
        self.ensure_log(total);
        let resident = self.make_resident(train, &order);
        let d = train.d as u64;
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        let mut complete = true;
        let (mut shown, mut last_read) = (f64::NAN, Instant::now());
        for b in first..total {
            let range = b * bs..((b + 1) * bs).min(n);
            let len = range.len() as u32;
            let mut enc = self.device.create_command_encoder(&Default::default());
            if let Some(r) = self.resident.as_ref().filter(|_| resident) {
                let (_, _, bx, bl, _) = self.net.buffers();
                for (k, &i) in order[range.clone()].iter().enumerate() {
                    enc.copy_buffer_to_buffer(&r.x, 4 * d * i as u64, bx, 4 * d * k as u64, 4 * d);
                }
                enc.copy_buffer_to_buffer(&r.labels, 4 * range.start as u64, bl, 0, 4 * len as u64);
            } else {
                x.clear();
                labels.clear();
                for &i in &order[range.clone()] {
                    x.extend_from_slice(train.sample(i as usize));
                    labels.push(train.labels[i as usize]);
                }
                self.net.write_batch(&x, &labels).map_err(core_error)?;
            }
            self.write_step();
            self.submit_step(enc, len, b);
            self.at.next_batch = b + 1;
            if last_read.elapsed() >= Duration::from_secs(1) {
                shown = f64::from(self.read(&self.log, 2 * b, 1)?[0]);
                last_read = Instant::now();
            }
            if !on_batch(b + 1, total, shown) && b + 1 < total {
                complete = false;
                break;
            }
        }
        let done = self.at.next_batch;
        let log = if done > first { self.read(&self.log, 2 * first, 2 * (done - first))? } else { Vec::new() };
        // As the dense GPU trainer: a diverged epoch keeps the sums of its good batches and
        // points at the batch that diverged.
        let logged = log.chunks_exact(2).map(|e| (f64::from(e[0]), e[1] as usize));
        if let Some((b, loss)) = self.at.add_logged(first, logged, |b| bs.min(n - b * bs)) {
            return Err(Error::Data(format!(
                "the loss became {loss} in epoch {}, batch {}: the training diverged. Lower the learning \
                 rate or the final time, or use more steps per stage.",
                self.at.epoch + 1,
                b + 1
            )));
        }
        let sums = self.at.end_pass(complete, start.elapsed().as_secs_f64());
        let v = match val.filter(|_| complete) {
            Some(v) => Some(self.evaluate(v)?),
            None => None,
        };
        let v = v.map(|v| (v.loss, v.accuracy));
        Ok(sums.report(self.at.epoch, self.t, v, self.kind.lr(), complete))
    }

    /// Loss, accuracy and predictions over `data` in batches of the batch size (forward only);
    /// one readback per part of the set as large as the device's buffers allow (all of MNIST's
    /// 10,000 test images at once on any device).
    pub fn evaluate(&mut self, data: &Dataset) -> Result<ImageEval> {
        let bs = self.batch_size;
        let part = ((self.device.limits().max_buffer_size / 8) as usize / bs).max(1) * bs;
        self.evaluate_in_parts(data, part)
    }

    /// [`Self::evaluate`] reading back after every `part` images (rounded up to whole batches);
    /// public for the test of the parts' seams.
    #[doc(hidden)]
    pub fn evaluate_in_parts(&mut self, data: &Dataset, part: usize) -> Result<ImageEval> {
        self.check_data(data)?;
        let n = data.len();
        if n == 0 {
            return Err(Error::Data("cannot evaluate on an empty data set".into()));
        }
        // One loss and one prediction per image.
        let bs = self.batch_size;
        let part = part.div_ceil(bs).max(1) * bs;
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("image eval"),
            size: 8 * part.min(n) as u64,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let (losses, _, preds) = self.net.head_offsets();
        let d = data.d;
        let (mut loss, mut pred) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for p0 in (0..n).step_by(part) {
            let len = part.min(n - p0);
            for s in (p0..p0 + len).step_by(bs) {
                let e = (s + bs).min(p0 + len);
                let m = self.net.write_batch(&data.x[s * d..e * d], &data.labels[s..e]).map_err(core_error)?;
                self.net.prepare(m);
                let mut enc = self.device.create_command_encoder(&Default::default());
                self.net.record(&mut enc, m, false);
                let (.., head) = self.net.buffers();
                let (bytes, at) = (4 * m as u64, (s - p0) as u64);
                enc.copy_buffer_to_buffer(head, 4 * losses, &out, 4 * at, bytes);
                enc.copy_buffer_to_buffer(head, 4 * preds, &out, 4 * (len as u64 + at), bytes);
                self.queue.submit([enc.finish()]);
            }
            let all = self.read(&out, 0, 2 * len)?;
            loss.extend_from_slice(&all[..len]);
            pred.extend_from_slice(&all[len..]);
        }
        let predictions: Vec<u32> = pred.iter().map(|&p| p as u32).collect();
        let correct = predictions.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
        let loss: f64 = loss.iter().map(|&l| f64::from(l)).sum();
        Ok(ImageEval { loss: loss / n as f64, accuracy: correct as f64 / n as f64, predictions })
    }

    /// The parameters, read back from the device.
    pub fn params(&self) -> Result<ImageParams<f32>> {
        let mut p = self.template.clone();
        p.data = self.read(self.net.buffers().0, 0, self.count)?;
        Ok(p)
    }

    fn prefixes(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Sgd { .. } => &["optim.velocity"],
            OptimizerKind::Adam { .. } => &["optim.adam_m", "optim.adam_v"],
        }
    }

    /// Optimiser state as tensors, named as the CPU trainer names them (`optim.adam_m.<tensor>`,
    /// ..., `optim.t`): checkpoints cross backends.
    pub fn optimizer_state(&self) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        for (prefix, buf) in self.prefixes().iter().zip([&self.m, &self.v]) {
            let flat = self.read(buf, 0, self.count)?;
            for s in &self.template.slots {
                let v = flat[s.offset..s.offset + s.len].to_vec();
                out.push(Tensor::new(format!("{prefix}.{}", s.name), s.shape.clone(), v));
            }
        }
        out.push(Tensor::new("optim.t".to_string(), vec![1], vec![self.t as f32]));
        Ok(out)
    }

    /// Restores [`GpuImageTrainer::optimizer_state`] (or the CPU trainer's); a missing or
    /// mis-shaped tensor is an error and changes nothing.
    pub fn load_optimizer_state(&mut self, tensors: &[Tensor]) -> Result<()> {
        let find = |name: &str| tensors.iter().find(|t| t.name == name);
        let bad = |m: String| Err(Error::Shape(format!("optimizer state ({}): {m}", self.kind.name())));
        let mut bufs = Vec::new();
        for prefix in self.prefixes() {
            let mut flat = vec![0.0f32; self.count];
            for s in &self.template.slots {
                let name = format!("{prefix}.{}", s.name);
                match find(&name) {
                    Some(t) if t.shape == s.shape && t.data.len() == s.len => {
                        flat[s.offset..s.offset + s.len].copy_from_slice(&t.data)
                    }
                    Some(t) => return bad(format!("{name} has shape {:?}, expected {:?}", t.shape, s.shape)),
                    None => return bad(format!("missing tensor {name}")),
                }
            }
            bufs.push(flat);
        }
        let t = match find("optim.t") {
            Some(t) if t.data.len() == 1 && t.data[0] >= 0.0 && t.data[0].fract() == 0.0 => t.data[0] as u64,
            _ => return bad("optim.t is missing or not a whole number".into()),
        };
        for (flat, buf) in bufs.iter().zip([&self.m, &self.v]) {
            self.queue.write_buffer(buf, 0, bytemuck::cast_slice(flat));
        }
        self.t = t;
        Ok(())
    }

    /// `len` floats of `src` from element `at` (one copy, one map).
    fn read(&self, src: &wgpu::Buffer, at: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = 4 * len.max(1) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("image trainer readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 4 * at as u64, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let mut out: Vec<f32> = crate::device::read_mapped(&self.device, &staging, bytes)
            .map_err(|e| Error::Device(format!("reading back from {}: {e:#}", self.adapter)))?;
        out.truncate(len);
        Ok(out)
    }
}
