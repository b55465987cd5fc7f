//! The whole image network on the GPU (docs/IMAGES.md): the opening convolution, the stages
//! ([`ImageStage`]), the widenings between them and the head (global pooling, classifier,
//! softmax cross-entropy), forward and backward in one compute pass; `shaders/image_net.wgsl`.
//! CPU twin: `stablenet_core::image::ImageNet::loss_grad`.
//!
//! Each junction (opening, widening s, head) has its own pipelines (its shapes are override
//! constants) and bind group (the fields of the stages on either side of it).
use super::{CHUNK_ITERS, ImageStage, LOOP_BUDGET, StageSpec, WG, fold};
use crate::device::{Gpu, binding_limit, describe};
use crate::shaders;
use anyhow::{Result, bail, ensure};
use stablenet_core::Activation;
use stablenet_core::image::{ImageConfig, ImageParams};

/// Storage buffers every junction kernel binds (image_net.wgsl bindings 0..8; 9 is the
/// uniform): the layout and the adapter check both use it, so they cannot disagree.
const STORAGE_BINDINGS: u32 = 9;

/// What the network asks of the adapter beyond its stages (each [`ImageStage::new`] checks
/// its own), before anything is allocated.
fn check_limits(cfg: &ImageConfig, nmax: usize, lim: &wgpu::Limits) -> Result<()> {
    let (ns, classes) = (cfg.stages(), cfg.classes as u32);
    let last = cfg.stage_shape(ns - 1);
    // In u64: an absurd class count or batch must be refused here, not wrap.
    let budget = LOOP_BUDGET as u64;
    if nmax as u64 > budget
        || last.pixels() as u64 > budget
        || classes as u64 * last.c as u64 > budget
        || cfg.input.c as u64 * 9 > budget
    {
        bail!(
            "the GPU image network sums up to {LOOP_BUDGET} terms per loop (batch {nmax}, last stage \
             {} pixels, {} classes x {} channels, {} input channels x 9)",
            last.pixels(),
            classes,
            last.c,
            cfg.input.c
        );
    }
    // The whole network's parameters, their gradient (and in GpuImageTrainer the optimiser's
    // moments) are one binding each, indexed in u32; the readback holds them and 2 totals.
    let count: u64 = cfg.tensors().iter().map(|(_, shape)| shape.iter().product::<usize>() as u64).sum();
    let cap = binding_limit(lim).min(4 * u32::MAX as u64);
    if 4 * (count + 2) > cap {
        bail!(
            "the image network has {count} parameters, {} bytes in one binding, above this adapter's \
             storage binding limit of {cap} bytes (max_storage_buffer_binding_size / max_buffer_size, and \
             u32 indices); use fewer channels or steps",
            4 * count
        );
    }
    if lim.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS {
        bail!(
            "the image network kernels bind {STORAGE_BINDINGS} storage buffers; this adapter allows {} \
             (max_storage_buffers_per_shader_stage)",
            lim.max_storage_buffers_per_shader_stage
        );
    }
    Ok(())
}

/// Mirrors `struct NetJob` in image_net.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct NetJob {
    n: u32,
    src: u32,
    src2: u32,
    dst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NetKernel {
    OpenForward,
    OpenUbar,
    OpenPartial,
    WidenForward,
    WidenUbar,
    WidenYbar,
    WidenPartial,
    Finish,
    Pool,
    Classify,
    HeadReduce,
    ClassifyYbar,
}

impl NetKernel {
    fn entry(self) -> &'static str {
        match self {
            NetKernel::OpenForward => "open_forward",
            NetKernel::OpenUbar => "open_ubar",
            NetKernel::OpenPartial => "open_wgrad_partial",
            NetKernel::WidenForward => "widen_forward",
            NetKernel::WidenUbar => "widen_ubar",
            NetKernel::WidenYbar => "widen_ybar",
            NetKernel::WidenPartial => "widen_wgrad_partial",
            NetKernel::Finish => "wgrad_finish",
            NetKernel::Pool => "pool",
            NetKernel::Classify => "classify",
            NetKernel::HeadReduce => "head_reduce",
            NetKernel::ClassifyYbar => "classify_ybar",
        }
    }
}

/// One junction's shapes, pipelines and bind group.
struct Junction {
    cin: u32,
    cout: u32,
    rows: u32,
    cols: u32,
    taps: u32,
    rpc: u32,
    pipes: Vec<(NetKernel, wgpu::ComputePipeline)>,
    bind: wgpu::BindGroup,
}

impl Junction {
    fn nout(&self) -> u32 {
        self.cout * self.cin * self.taps + self.cout
    }

    fn chunks(&self, n: u32) -> u32 {
        (n * self.rows).div_ceil(self.rpc)
    }
}

/// What a loss-and-gradient call records, in order.
enum Step {
    Net(usize, NetKernel, NetJob),
    StageForward(usize),
    StageAdjoint(usize),
}

/// Mean loss, correct predictions and gradient of a batch.
pub struct GpuLossGrad {
    pub loss: f64,
    pub correct: usize,
    pub grad: ImageParams<f32>,
}

pub struct GpuImageNet {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub cfg: ImageConfig,
    nmax: u32,
    stages: Vec<ImageStage>,
    /// 0: opening, 1..S: widening s - 1, S: head.
    junctions: Vec<Junction>,
    params: wgpu::Buffer,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
    head: wgpu::Buffer,
    grad: wgpu::Buffer,
    jobs: wgpu::Buffer,
    readback: wgpu::Buffer,
    job_stride: u32,
    grid_x: u32,
    max_groups: u32,
    table_n: Option<u32>,
    /// Where each stage's kernels start in the flat parameters.
    stage_offsets: Vec<u64>,
    template: ImageParams<f32>,
    head_totals: u64,
}

impl GpuImageNet {
    /// Buffers, pipelines and bind groups for a network and a batch capacity `nmax`.
    pub fn new(gpu: &Gpu, cfg: &ImageConfig, nmax: usize) -> Result<Self> {
        cfg.validate()?;
        let lim = &gpu.limits;
        check_limits(cfg, nmax, lim)?;
        let (ns, classes) = (cfg.stages(), cfg.classes as u32);
        let last = cfg.stage_shape(ns - 1);
        let stages = (0..ns)
            .map(|s| {
                let spec = StageSpec {
                    integrator: cfg.integrator,
                    act: cfg.activation,
                    shape: cfg.stage_shape(s),
                    steps: cfg.steps,
                    h: cfg.h(),
                    gamma: cfg.gamma,
                };
                ImageStage::new(gpu, spec, nmax)
            })
            .collect::<Result<Vec<_>>>()?;
        let template = ImageParams::<f32>::zeros(cfg);
        let off = |name: &str| template.slot(name).offset;
        let nm = nmax as u64;
        // (cin, cout, rows, cols, taps, weight, bias) of each junction.
        let mut shapes = vec![(
            cfg.input.c,
            cfg.channels[0],
            cfg.input.h,
            cfg.input.w,
            9,
            off("opening.weight"),
            off("opening.bias"),
        )];
        for s in 0..ns - 1 {
            let sh = cfg.stage_shape(s);
            let (w, b) = (off(&format!("widen.{s}.weight")), off(&format!("widen.{s}.bias")));
            shapes.push((sh.c, cfg.channels[s + 1], sh.h, sh.w, 1, w, b));
        }
        shapes.push((last.c, cfg.classes, last.h, last.w, 1, off("classifier.weight"), off("classifier.bias")));

        let cap = binding_limit(lim).min(4 * u32::MAX as u64);
        let max_groups = lim.max_compute_workgroups_per_dimension;
        let mut scratch_len = 0u64;
        let mut partial_len = 0u64;
        for &(cin, cout, rows, cols, taps, ..) in &shapes[..ns] {
            scratch_len = scratch_len.max(nm * (cout * rows * cols) as u64);
            let rpc = (CHUNK_ITERS as usize / cols).max(1) as u64;
            let chunks = (nm * rows as u64).div_ceil(rpc);
            if chunks > max_groups.min(LOOP_BUDGET) as u64 {
                bail!(
                    "a batch of {nmax} needs {chunks} reduction chunks, above {}; use a smaller batch",
                    max_groups.min(LOOP_BUDGET)
                );
            }
            partial_len = partial_len.max(chunks * (cout * cin * taps + cout) as u64);
        }
        let head_totals = nm * (last.c as u64 + classes as u64 + 2);
        let x_len = nm * cfg.input.len() as u64;
        for (what, len) in [("input images", x_len), ("junction scratch", scratch_len), ("partial sums", partial_len)] {
            if 4 * len > cap {
                bail!(
                    "a batch of {nmax} needs {} bytes for the {what}, above this adapter's storage binding \
                     limit of {cap} bytes (max_storage_buffer_binding_size / max_buffer_size, and u32 \
                     indices); use a smaller batch",
                    4 * len
                );
            }
        }
        let dev = &gpu.device;
        let buf = |label: &str, len: u64, usage: wgpu::BufferUsages| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 4 * len.max(1),
                usage,
                mapped_at_creation: false,
            })
        };
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let count = template.data.len() as u64;
        let params = buf("net params", count, rw);
        let x = buf("net x", x_len, rw);
        let labels = buf("net labels", nm, rw);
        let scratch = buf("net scratch", scratch_len, rw);
        let head = buf("net head", head_totals + 2 + nm, rw);
        let partial = buf("net partials", partial_len, rw);
        let grad = buf("net grad", count, rw);
        let dummy = buf("net unused", 1, rw);
        let align = lim.min_uniform_buffer_offset_alignment;
        let job_stride = (std::mem::size_of::<NetJob>() as u32).div_ceil(align) * align;
        let entries = 6 + 5 * ns as u64; // an upper bound on net dispatches per call
        let jobs = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("net jobs"),
            size: entries * job_stride as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let readback = buf("net readback", count + 2, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);

        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: binding == STORAGE_BINDINGS,
                min_binding_size: if binding == STORAGE_BINDINGS {
                    wgpu::BufferSize::new(std::mem::size_of::<NetJob>() as u64)
                } else {
                    None
                },
            },
            count: None,
        };
        let mut layout_entries: Vec<_> =
            (0..STORAGE_BINDINGS).map(|b| entry(b, wgpu::BufferBindingType::Storage { read_only: b < 3 })).collect();
        layout_entries.push(entry(STORAGE_BINDINGS, wgpu::BufferBindingType::Uniform));
        let bgl = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("net"),
            entries: &layout_entries,
        });
        let layout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("net"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("image net"),
            source: wgpu::ShaderSource::Wgsl(shaders::image_net().into()),
        });
        let mut junctions = Vec::new();
        for (i, &(cin, cout, rows, cols, taps, ow, ob)) in shapes.iter().enumerate() {
            let rpc = (CHUNK_ITERS as usize / cols).max(1) as u32;
            let pix = (rows * cols) as f64;
            let consts: Vec<(&str, f64)> = vec![
                ("WG", WG as f64),
                ("ACT", if cfg.activation == Activation::Relu { 1.0 } else { 0.0 }),
                ("CIN", cin as f64),
                ("COUT", cout as f64),
                ("ROWS", rows as f64),
                ("COLS", cols as f64),
                ("NMAX", nmax as f64),
                ("OFF_W", ow as f64),
                ("OFF_B", ob as f64),
                ("TAPS", taps as f64),
                ("RPC", rpc as f64),
                ("DST_PIX", if i == 0 { pix } else { pix / 4.0 }),
            ];
            let kernels: &[NetKernel] = if i == 0 {
                &[NetKernel::OpenForward, NetKernel::OpenUbar, NetKernel::OpenPartial, NetKernel::Finish]
            } else if i < ns {
                &[
                    NetKernel::WidenForward,
                    NetKernel::WidenUbar,
                    NetKernel::WidenYbar,
                    NetKernel::WidenPartial,
                    NetKernel::Finish,
                ]
            } else {
                &[NetKernel::Pool, NetKernel::Classify, NetKernel::HeadReduce, NetKernel::ClassifyYbar]
            };
            let pipes = kernels
                .iter()
                .map(|&k| (k, gpu.compute_pipeline(Some(&layout), &module, k.entry(), &consts)))
                .collect();
            let src = if i == 0 { &dummy } else { stages[i - 1].fields() };
            let dst = if i < ns { stages[i].fields() } else { &dummy };
            let bufs = [&params, &x, &labels, src, dst, &scratch, &head, &partial, &grad];
            let mut bg: Vec<wgpu::BindGroupEntry> = bufs
                .iter()
                .enumerate()
                .map(|(b, buf)| wgpu::BindGroupEntry { binding: b as u32, resource: buf.as_entire_binding() })
                .collect();
            bg.push(wgpu::BindGroupEntry {
                binding: STORAGE_BINDINGS,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &jobs,
                    offset: 0,
                    size: wgpu::BufferSize::new(std::mem::size_of::<NetJob>() as u64),
                }),
            });
            let bind =
                dev.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("net"), layout: &bgl, entries: &bg });
            let (cin, cout, rows, cols) = (cin as u32, cout as u32, rows as u32, cols as u32);
            junctions.push(Junction { cin, cout, rows, cols, taps: taps as u32, rpc, pipes, bind });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("building the GPU image network kernels failed on {}: {e}", describe(&gpu.info));
        }
        let stage_offsets = (0..ns).map(|s| template.slot(&format!("stages.{s}.weight")).offset as u64).collect();
        Ok(GpuImageNet {
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            cfg: cfg.clone(),
            nmax: nmax as u32,
            stages,
            junctions,
            params,
            x,
            labels,
            head,
            grad,
            jobs,
            readback,
            job_stride,
            grid_x: max_groups,
            max_groups,
            table_n: None,
            stage_offsets,
            template,
            head_totals,
        })
    }

    /// Caps the workgroups per grid row (the checks: 2-D grids on small batches).
    pub fn limit_grid(&mut self, x: u32) {
        self.grid_x = x.clamp(1, self.max_groups);
        for st in &mut self.stages {
            st.limit_grid(x);
        }
    }

    /// Uploads every parameter (the stages' kernels also to their own buffers).
    pub fn set_params(&self, p: &ImageParams<f32>) -> Result<()> {
        p.check_shape(&self.cfg)?;
        self.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&p.data));
        for (s, st) in self.stages.iter().enumerate() {
            st.set_params(p.get(&format!("stages.{s}.weight")), p.get(&format!("stages.{s}.bias")))?;
        }
        Ok(())
    }

    /// Every dispatch of a loss-and-gradient call, in order.
    fn program(&self, n: u32) -> Vec<Step> {
        let ns = self.stages.len();
        let io: Vec<_> = self.stages.iter().map(|s| s.io_slots()).collect();
        let job = |src, src2, dst| NetJob { n, src, src2, dst };
        let mut p = vec![Step::Net(0, NetKernel::OpenForward, job(0, 0, io[0].0))];
        for s in 0..ns {
            p.push(Step::StageForward(s));
            if s + 1 < ns {
                p.push(Step::Net(s + 1, NetKernel::WidenForward, job(io[s].1, 0, io[s + 1].0)));
            }
        }
        let head = job(io[ns - 1].1, io[ns - 1].2, 0);
        for k in [NetKernel::Pool, NetKernel::Classify, NetKernel::HeadReduce, NetKernel::ClassifyYbar] {
            p.push(Step::Net(ns, k, head));
        }
        for s in (0..ns).rev() {
            p.push(Step::StageAdjoint(s));
            if s > 0 {
                // The widening into stage s, from stage s - 1's final state (its adjoint has
                // not run yet) and stage s's dLoss/dy_0.
                let j = job(io[s - 1].1, io[s - 1].2, io[s].3);
                for k in [NetKernel::WidenUbar, NetKernel::WidenPartial, NetKernel::Finish, NetKernel::WidenYbar] {
                    p.push(Step::Net(s, k, j));
                }
            }
        }
        for k in [NetKernel::OpenUbar, NetKernel::OpenPartial, NetKernel::Finish] {
            p.push(Step::Net(0, k, job(0, 0, io[0].3)));
        }
        p
    }

    /// Mean loss, correct predictions and the gradient of the batch `x` (n images) with
    /// `labels`: one encoder, one submit, one readback.
    pub fn loss_grad(&mut self, x: &[f32], labels: &[u32]) -> Result<GpuLossGrad> {
        let n = self.write_batch(x, labels)?;
        self.prepare(n);
        let mut enc = self.device.create_command_encoder(&Default::default());
        self.record(&mut enc, n, true);
        let count = 4 * self.template.data.len() as u64;
        enc.copy_buffer_to_buffer(&self.grad, 0, &self.readback, 0, count);
        enc.copy_buffer_to_buffer(&self.head, 4 * self.head_totals, &self.readback, count, 8);
        self.queue.submit([enc.finish()]);
        let all: Vec<f32> = crate::device::read_mapped(&self.device, &self.readback, count + 8)?;
        let mut grad = self.template.clone();
        let k = grad.data.len();
        grad.data.copy_from_slice(&all[..k]);
        let (loss, hits) = (all[k], all[k + 1]);
        Ok(GpuLossGrad { loss: f64::from(loss), correct: hits as usize, grad })
    }

    /// Checks a batch and queues its upload into the input buffers; returns n.
    pub(crate) fn write_batch(&self, x: &[f32], labels: &[u32]) -> Result<u32> {
        let n = labels.len();
        let d = self.cfg.input.len();
        ensure!(
            n > 0 && n as u32 <= self.nmax && x.len() == n * d,
            "image batch: {} values for {n} labels (capacity {} images of {d} values)",
            x.len(),
            self.nmax
        );
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= self.cfg.classes) {
            bail!("label {bad} is out of range for {} classes", self.cfg.classes);
        }
        self.queue.write_buffer(&self.x, 0, bytemuck::cast_slice(x));
        self.queue.write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
        Ok(n as u32)
    }

    /// Writes the uniform tables of a batch of n (only when n changes).
    pub(crate) fn prepare(&mut self, n: u32) {
        if self.table_n != Some(n) {
            let mut bytes = Vec::new();
            for step in &self.program(n) {
                if let Step::Net(_, _, job) = step {
                    let mut e = bytemuck::bytes_of(job).to_vec();
                    e.resize(self.job_stride as usize, 0);
                    bytes.extend(e);
                }
            }
            self.queue.write_buffer(&self.jobs, 0, &bytes);
            self.table_n = Some(n);
        }
        for st in &mut self.stages {
            st.prepare(n);
        }
    }

    /// Records a batch of n (after [`GpuImageNet::prepare`], the batch in the input buffers):
    /// with `backward`, forward, backward and the whole gradient in the gradient buffer;
    /// without, the forward pass up to the per-example losses, hits and predictions.
    pub(crate) fn record(&self, enc: &mut wgpu::CommandEncoder, n: u32, backward: bool) {
        {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("image net"), timestamp_writes: None });
            let mut entry = 0;
            for step in &self.program(n) {
                match *step {
                    Step::StageForward(s) => self.stages[s].record_forward(&mut pass, n),
                    Step::StageAdjoint(s) => self.stages[s].record_adjoint(&mut pass, n),
                    Step::Net(ji, k, _) => {
                        if k == NetKernel::HeadReduce && !backward {
                            break;
                        }
                        self.dispatch(&mut pass, ji, k, entry, n);
                        entry += 1;
                    }
                }
            }
        }
        if backward {
            for (st, &off) in self.stages.iter().zip(&self.stage_offsets) {
                let bytes = 4 * (st.spec.k_len() + st.spec.b_len()) as u64;
                enc.copy_buffer_to_buffer(st.grad_buffer(), 0, &self.grad, 4 * off, bytes);
            }
        }
    }

    /// Copies the stages' kernels and biases from the whole parameter buffer into the stages'
    /// own buffers (after an optimiser step on the device).
    pub(crate) fn record_stage_params(&self, enc: &mut wgpu::CommandEncoder) {
        for (st, &off) in self.stages.iter().zip(&self.stage_offsets) {
            let bytes = 4 * (st.spec.k_len() + st.spec.b_len()) as u64;
            enc.copy_buffer_to_buffer(&self.params, 4 * off, st.params_buffer(), 0, bytes);
        }
    }

    /// The buffers a trainer works on: (params, grad, x, labels, head).
    pub(crate) fn buffers(&self) -> (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer) {
        (&self.params, &self.grad, &self.x, &self.labels, &self.head)
    }

    /// Element offsets in the head buffer: (per-example losses, totals (mean loss, hits),
    /// per-example predictions).
    pub(crate) fn head_offsets(&self) -> (u64, u64, u64) {
        let nm = self.nmax as u64;
        let last = self.cfg.stage_shape(self.stages.len() - 1);
        (nm * (last.c + self.cfg.classes) as u64, self.head_totals, self.head_totals + 2)
    }

    /// The batch capacity.
    pub fn nmax(&self) -> usize {
        self.nmax as usize
    }

    fn dispatch(&self, pass: &mut wgpu::ComputePass, ji: usize, k: NetKernel, entry: u32, n: u32) {
        let j = &self.junctions[ji];
        let pix = j.rows * j.cols;
        // Invocations (pixels or gradient outputs) on a 2-D grid; the reduction chunks on z.
        let grid = |count: u32, z: u32| {
            let (x, y) = fold(count.div_ceil(WG), self.grid_x, self.max_groups);
            (x, y, z)
        };
        let (x, y, z) = match k {
            NetKernel::OpenForward | NetKernel::OpenUbar | NetKernel::WidenUbar => grid(n * j.cout * pix, 1),
            NetKernel::WidenForward => grid(n * j.cout * pix / 4, 1),
            NetKernel::WidenYbar | NetKernel::ClassifyYbar => grid(n * j.cin * pix, 1),
            NetKernel::Pool => grid(n * j.cin, 1),
            NetKernel::Classify => grid(n, 1),
            NetKernel::OpenPartial | NetKernel::WidenPartial => grid(j.nout(), j.chunks(n)),
            NetKernel::Finish => grid(j.nout(), 1),
            NetKernel::HeadReduce => grid(j.nout() + 2, 1),
        };
        let pipe = &j.pipes.iter().find(|(p, _)| *p == k).expect("junction kernel built").1;
        pass.set_pipeline(pipe);
        pass.set_bind_group(0, &j.bind, &[entry * self.job_stride]);
        pass.dispatch_workgroups(x, y, z);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stablenet_core::Integrator;
    use stablenet_core::image::Shape;

    fn cfg(channels: &[usize], steps: usize) -> ImageConfig {
        ImageConfig {
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            input: Shape::new(1, 8, 8),
            channels: channels.to_vec(),
            steps,
            final_time: 1.0,
            gamma: 0.0,
            classes: 10,
        }
    }

    /// The junction layout binds 9 storage buffers; an adapter with 8 is refused by name (the
    /// check once asked for 8).
    #[test]
    fn adapters_need_nine_storage_buffers() {
        let small = wgpu::Limits { max_storage_buffers_per_shader_stage: 8, ..wgpu::Limits::default() };
        let err = check_limits(&cfg(&[4, 8], 2), 16, &small).unwrap_err().to_string();
        assert!(err.contains("9 storage buffers") && err.contains("max_storage_buffers_per_shader_stage"), "{err}");
        let nine = wgpu::Limits { max_storage_buffers_per_shader_stage: 9, ..wgpu::Limits::default() };
        check_limits(&cfg(&[4, 8], 2), 16, &nine).unwrap();
    }

    /// Two stages of 1024 channels, 3 steps: each stage's K, b fit wgpu's default 128 MiB
    /// binding, the whole network's parameters (226 MB) do not; refused before any buffer
    /// exists, not by a validation error when the bind group is made.
    #[test]
    fn parameters_must_fit_one_binding() {
        let lim = wgpu::Limits { max_storage_buffers_per_shader_stage: 9, ..wgpu::Limits::default() };
        let err = check_limits(&cfg(&[1024, 1024], 3), 16, &lim).unwrap_err().to_string();
        assert!(err.contains("parameters") && err.contains("max_storage_buffer_binding_size"), "{err}");
        check_limits(&cfg(&[1024, 1024], 1), 16, &lim).unwrap();
    }
}
