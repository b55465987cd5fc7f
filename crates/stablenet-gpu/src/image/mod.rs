//! One stage of the image network on the GPU (docs/IMAGES.md): the integrators with 3x3
//! convolution operators K_j, forward and adjoint over a batch [n][c][H][W], with the kernel
//! and bias gradients reduced deterministically (`shaders/conv.wgsl`, `conv_steps.wgsl`).
//! CPU twin: `stablenet_core::image::stage::Stage`, checked by [`validate`].
//!
//! Every per-example field (states, adjoints, gradient factors) is a slot of one storage
//! buffer; a dispatch names the slots it works on in its uniform entry (plan.rs), so one
//! bind group and one pipeline per kernel serve every step. Buffers, pipelines and the bind
//! group are built once per stage shape and batch capacity; each call records one encoder.
mod net;
mod plan;
mod trainer;
pub mod validate;

use crate::device::{Gpu, describe};
use crate::shaders;
use anyhow::{Result, bail, ensure};
pub use net::{GpuImageNet, GpuLossGrad};
use plan::{Dispatch, Grid, Kernel, Plan};
use stablenet_core::image::Shape;
use stablenet_core::{Activation, Integrator};
pub use trainer::GpuImageTrainer;

const WG: u32 = 64;
/// Inner-loop iterations one invocation may run per loop statement; lavapipe silently stops
/// loops after 65535, so stay well below (as engine.rs).
const LOOP_BUDGET: u32 = 16384;
/// Inner iterations of one reduction invocation (chunk rows x W).
const CHUNK_ITERS: u32 = 4096;
/// Largest channel count: a convolution runs 9c iterations per invocation.
pub const MAX_CHANNELS: usize = 1024;

/// `g` workgroups as a 2-D grid whose rows hold at most `row` (and at most `max`, the
/// adapter's max_compute_workgroups_per_dimension): the kernels fold y back into one index
/// (`example()` in common.wgsl).
pub(crate) fn fold(g: u32, row: u32, max: u32) -> (u32, u32) {
    let x = g.min(row).max(g.div_ceil(max.max(1))).max(1);
    (x, g.div_ceil(x))
}

/// What one dispatch does; mirrors `struct ConvJob` in conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvJob {
    pub j: u32,
    pub n: u32,
    pub s: [u32; 7],
    pub flags: u32,
    pub alpha: f32,
    pub beta: f32,
    pub g1: f32,
    pub g2: f32,
}

/// The fixed data of one stage (as `stablenet_core::image::stage::Stage`, without K, b).
#[derive(Clone, Copy, Debug)]
pub struct StageSpec {
    pub integrator: Integrator,
    pub act: Activation,
    pub shape: Shape,
    pub steps: usize,
    /// Step size h = T / N.
    pub h: f64,
    pub gamma: f64,
}

impl StageSpec {
    /// Kernel values: N x c x c x 3 x 3.
    pub fn k_len(&self) -> usize {
        self.steps * self.shape.c * self.shape.c * 9
    }

    pub fn b_len(&self) -> usize {
        self.steps * self.shape.c
    }
}

/// The final state of a forward pass: y_N, and the second state (hamiltonian z_N, leapfrog
/// y_{N-1}; empty for resnet, antisym), each n x c x H x W.
pub struct StageState {
    pub y: Vec<f32>,
    pub z: Vec<f32>,
}

/// The result of an adjoint pass.
pub struct StageGrad {
    /// dLoss/dy_0, n x c x H x W.
    pub ybar: Vec<f32>,
    /// dLoss/dK_j, dLoss/db_j summed over the batch: N x c x c x 3 x 3 and N x c.
    pub dk: Vec<f32>,
    pub db: Vec<f32>,
    /// Hamiltonian, leapfrog: y_0 as rebuilt in reverse time; resnet, antisym: the stored y_0.
    pub y0: Vec<f32>,
}

pub struct ImageStage {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    max_groups: u32,
    pub spec: StageSpec,
    nmax: u32,
    plan: Plan,
    params: wgpu::Buffer,
    fields: wgpu::Buffer,
    grad: wgpu::Buffer,
    jobs: wgpu::Buffer,
    readback: wgpu::Buffer,
    job_stride: u32,
    pipes: Vec<(Kernel, wgpu::ComputePipeline)>,
    bind: wgpu::BindGroup,
    grid_x: u32,
    /// The batch size the fields hold a forward pass of (the adjoint walks it back).
    ready: Option<u32>,
    /// The batch size the uniform entries are written for.
    table_n: Option<u32>,
}

impl ImageStage {
    /// Buffers, pipelines and the bind group for a stage and a batch capacity `nmax`.
    pub fn new(gpu: &Gpu, spec: StageSpec, nmax: usize) -> Result<Self> {
        Self::with_chunk_rows(gpu, spec, nmax, None)
    }

    /// As [`ImageStage::new`], with the (example, row) pairs per reduction chunk fixed (the
    /// checks use small chunks so that tiny batches span several).
    pub fn with_chunk_rows(gpu: &Gpu, spec: StageSpec, nmax: usize, chunk_rows: Option<usize>) -> Result<Self> {
        let Shape { c, h, w } = spec.shape;
        ensure!(
            c > 0 && h > 0 && w > 0 && spec.steps > 0 && nmax > 0,
            "empty image stage or batch: {spec:?}, n = {nmax}"
        );
        ensure!(spec.h.is_finite() && spec.gamma.is_finite(), "step size and gamma must be finite");
        if c > MAX_CHANNELS {
            bail!("the GPU image stage supports up to {MAX_CHANNELS} channels, the stage has {c}");
        }
        if w as u32 > CHUNK_ITERS {
            bail!("the GPU image stage supports images up to {CHUNK_ITERS} pixels wide, got {w}");
        }
        let lim = &gpu.limits;
        let max_groups = lim.max_compute_workgroups_per_dimension;
        // Every binding is indexed in u32 (floats), whatever larger bindings the adapter allows.
        let cap = crate::device::binding_limit(lim).min(4 * u32::MAX as u64);
        // K_j, b_j of every step, and their gradient: one binding each, whatever the batch.
        let grad_len = (spec.k_len() + spec.b_len()) as u64;
        if 4 * grad_len > cap {
            bail!(
                "a stage of {} steps with {c} channels has {grad_len} kernel and bias values, {} bytes in one \
                 binding, above this adapter's storage binding limit of {cap} bytes \
                 (max_storage_buffer_binding_size / max_buffer_size, and u32 indices); use fewer channels or steps",
                spec.steps,
                4 * grad_len
            );
        }
        let rpc = chunk_rows.map_or(CHUNK_ITERS / w as u32, |r| r as u32).max(1);
        let plan = Plan::new(spec, rpc);
        let len = spec.shape.len() as u64;
        let nout = (c * c * 9 + c) as u64;
        let chunks = (nmax as u64 * h as u64).div_ceil(rpc as u64);
        let too_big = |what: &str, bytes: u64| {
            anyhow::anyhow!(
                "a batch of {nmax} images of {c} x {h} x {w} needs {bytes} bytes for {what}, above this \
                 adapter's storage binding limit of {cap} bytes (max_storage_buffer_binding_size / \
                 max_buffer_size, and u32 indices); use a smaller batch{}",
                if plan.slots > 7 { ", fewer steps, or a reversible integrator" } else { "" }
            )
        };
        let field_bytes = 4 * plan.slots as u64 * nmax as u64 * len;
        if field_bytes > cap {
            return Err(too_big(&format!("{} state, adjoint and factor fields", plan.slots), field_bytes));
        }
        if 4 * chunks * nout > cap {
            return Err(too_big("reduction partial sums", 4 * chunks * nout));
        }
        // The readback holds two fields of the batch and the gradient at once (one map).
        let readback_bytes = 4 * (2 * nmax as u64 * len + grad_len);
        if readback_bytes > lim.max_buffer_size {
            bail!(
                "a batch of {nmax} images of {c} x {h} x {w} needs a readback buffer of {readback_bytes} bytes, \
                 above this adapter's max_buffer_size of {}; use a smaller batch",
                lim.max_buffer_size
            );
        }
        let pixel_groups = (nmax as u64 * len).div_ceil(WG as u64);
        if nmax as u64 * len > u32::MAX as u64 || pixel_groups > max_groups as u64 * max_groups as u64 {
            bail!(
                "a batch of {nmax} images of {c} x {h} x {w} is beyond this adapter's dispatch grid; use a smaller batch"
            );
        }
        if chunks > max_groups.min(LOOP_BUDGET) as u64 {
            bail!(
                "a batch of {nmax} images of height {h} needs {chunks} reduction chunks, above {} \
                 (max_compute_workgroups_per_dimension, loop budget); use a smaller batch",
                max_groups.min(LOOP_BUDGET)
            );
        }
        if lim.max_storage_buffers_per_shader_stage < 4 {
            bail!(
                "the image kernels bind 4 storage buffers; this adapter allows {} \
                 (max_storage_buffers_per_shader_stage)",
                lim.max_storage_buffers_per_shader_stage
            );
        }

        let dev = &gpu.device;
        let buf = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let params = buf("image params", 4 * grad_len, rw);
        let fields = buf("image fields", field_bytes, rw);
        let partial = buf("image partials", 4 * chunks * nout, rw);
        let grad = buf("image grad", 4 * grad_len, rw);
        let align = lim.min_uniform_buffer_offset_alignment;
        let job_stride = (std::mem::size_of::<ConvJob>() as u32).div_ceil(align) * align;
        let jobs = buf(
            "image jobs",
            plan.entries() as u64 * job_stride as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let readback =
            buf("image readback", readback_bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);

        let entry = |binding: u32, ty: wgpu::BufferBindingType, dynamic: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: dynamic,
                min_binding_size: if dynamic {
                    wgpu::BufferSize::new(std::mem::size_of::<ConvJob>() as u64)
                } else {
                    None
                },
            },
            count: None,
        };
        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let bgl = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("image"),
            entries: &[
                entry(0, storage(true), false),
                entry(1, storage(false), false),
                entry(2, storage(false), false),
                entry(3, storage(false), false),
                entry(4, wgpu::BufferBindingType::Uniform, true),
            ],
        });
        let layout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("image"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let consts: Vec<(&str, f64)> = vec![
            ("WG", WG as f64),
            ("ACT", if spec.act == Activation::Relu { 1.0 } else { 0.0 }),
            ("CH", c as f64),
            ("ROWS", h as f64),
            ("COLS", w as f64),
            ("NSTEPS", spec.steps as f64),
            ("NMAX", nmax as f64),
            ("STEP_H", spec.h),
            ("GAMMA", spec.gamma),
            ("INTEG", if spec.integrator == Integrator::Antisym { 1.0 } else { 0.0 }),
            ("RPC", rpc as f64),
        ];
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("image"),
            source: wgpu::ShaderSource::Wgsl(shaders::image().into()),
        });
        let pipes = plan
            .kernels()
            .into_iter()
            .map(|k| (k, gpu.compute_pipeline(Some(&layout), &module, k.entry(), &consts)))
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("building the GPU image kernels failed on {}: {e}", describe(&gpu.info));
        }
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("image"),
            layout: &bgl,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: fields.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: partial.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: grad.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &jobs,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<ConvJob>() as u64),
                    }),
                },
            ],
        });
        Ok(ImageStage {
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            adapter: describe(&gpu.info),
            max_groups,
            spec,
            nmax: nmax as u32,
            plan,
            params,
            fields,
            grad,
            jobs,
            readback,
            job_stride,
            pipes,
            bind,
            grid_x: max_groups,
            ready: None,
            table_n: None,
        })
    }

    /// Caps the workgroups per grid row so that small batches run on the 2-D grid that only
    /// huge batches need otherwise (the checks).
    pub fn limit_grid(&mut self, x: u32) {
        self.grid_x = x.clamp(1, self.max_groups);
    }

    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Uploads the stage's kernels K (N x c x c x 3 x 3) and biases b (N x c).
    pub fn set_params(&self, k: &[f32], b: &[f32]) -> Result<()> {
        ensure!(k.len() == self.spec.k_len(), "stage kernels: {} values, expected {}", k.len(), self.spec.k_len());
        ensure!(b.len() == self.spec.b_len(), "stage biases: {} values, expected {}", b.len(), self.spec.b_len());
        self.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(k));
        self.queue.write_buffer(&self.params, 4 * k.len() as u64, bytemuck::cast_slice(b));
        Ok(())
    }

    fn batch(&self, values: usize, what: &str) -> Result<u32> {
        let len = self.spec.shape.len();
        let n = values / len;
        ensure!(
            values == n * len && n > 0 && n as u32 <= self.nmax,
            "{what}: {values} values, expected n x {len} with 1 <= n <= {} (the stage's batch capacity)",
            self.nmax
        );
        Ok(n as u32)
    }

    fn slot_bytes(&self, slot: u32) -> u64 {
        4 * slot as u64 * self.nmax as u64 * self.spec.shape.len() as u64
    }

    /// Writes the uniform entries of a batch of n (once per batch size).
    pub(crate) fn prepare(&mut self, n: u32) {
        if self.table_n == Some(n) {
            return;
        }
        let bytes: Vec<u8> = self
            .plan
            .jobs(n)
            .iter()
            .flat_map(|d| {
                let mut e = bytemuck::bytes_of(&d.job).to_vec();
                e.resize(self.job_stride as usize, 0);
                e
            })
            .collect();
        self.queue.write_buffer(&self.jobs, 0, &bytes);
        self.table_n = Some(n);
    }

    /// Runs every step forward on the batch y_0 (n x c x H x W) and reads back the final
    /// state. One encoder, one submit.
    pub fn forward(&mut self, y0: &[f32]) -> Result<StageState> {
        let n = self.batch(y0.len(), "stage input")?;
        self.prepare(n);
        self.queue.write_buffer(&self.fields, self.slot_bytes(self.plan.input), bytemuck::cast_slice(y0));
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.record_forward(&mut pass, n);
        }
        self.queue.submit([enc.finish()]);
        self.ready = Some(n);
        let (ys, zs) = self.plan.final_slots;
        let mut out = self.read(&std::iter::once(ys).chain(zs).map(|s| (s, n)).collect::<Vec<_>>(), false)?;
        let z = if zs.is_some() { out.pop().unwrap_or_default() } else { Vec::new() };
        Ok(StageState { y: out.pop().unwrap_or_default(), z })
    }

    /// The adjoint pass of the batch the last [`ImageStage::forward`] ran, from ybar =
    /// dLoss/dy_N: dLoss/dy_0 and the parameter gradients. One encoder, one submit.
    pub fn adjoint(&mut self, ybar: &[f32]) -> Result<StageGrad> {
        let n = self.batch(ybar.len(), "stage adjoint input")?;
        ensure!(self.ready == Some(n), "the adjoint pass needs a forward pass of the same batch first");
        self.ready = None; // the reversible integrators walk their states back to y_0
        self.queue.write_buffer(&self.fields, self.slot_bytes(self.plan.ybar_in), bytemuck::cast_slice(ybar));
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.record_adjoint(&mut pass, n);
        }
        self.queue.submit([enc.finish()]);
        let mut out = self.read(&[(self.plan.ybar_out, n), (self.plan.y0_out, n)], true)?;
        let mut grad = out.pop().unwrap_or_default();
        let y0 = out.pop().unwrap_or_default();
        let db = grad.split_off(self.spec.k_len());
        Ok(StageGrad { ybar: out.pop().unwrap_or_default(), dk: grad, db, y0 })
    }

    /// Records the forward pass of a batch of n (after [`ImageStage::prepare`]; y_0 in the
    /// input slot).
    pub(crate) fn record_forward(&self, pass: &mut wgpu::ComputePass, n: u32) {
        let jobs = self.plan.jobs(n);
        self.record(pass, &jobs[..self.plan.forward_len], 0, n);
    }

    /// Records the adjoint pass (after the forward pass; ybar = dLoss/dy_N in its slot).
    pub(crate) fn record_adjoint(&self, pass: &mut wgpu::ComputePass, n: u32) {
        let jobs = self.plan.jobs(n);
        let f = self.plan.forward_len;
        self.record(pass, &jobs[f..], f as u32, n);
    }

    /// The per-example fields (what the network's junction kernels read and write).
    pub(crate) fn fields(&self) -> &wgpu::Buffer {
        &self.fields
    }

    /// K_0..K_{N-1} | b_0..b_{N-1}.
    pub(crate) fn params_buffer(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// dK_0..dK_{N-1} | db_0..db_{N-1} after an adjoint pass.
    pub(crate) fn grad_buffer(&self) -> &wgpu::Buffer {
        &self.grad
    }

    /// Slots: (y_0 in, y_N out, ybar = dLoss/dy_N in, dLoss/dy_0 out).
    pub(crate) fn io_slots(&self) -> (u32, u32, u32, u32) {
        (self.plan.input, self.plan.final_slots.0, self.plan.ybar_in, self.plan.ybar_out)
    }

    fn pipe(&self, k: Kernel) -> &wgpu::ComputePipeline {
        &self.pipes.iter().find(|(p, _)| *p == k).expect("every planned kernel has a pipeline").1
    }

    /// Records dispatches whose uniform entries start at entry `first`.
    fn record(&self, pass: &mut wgpu::ComputePass, list: &[Dispatch], first: u32, n: u32) {
        let len = self.spec.shape.len() as u32;
        let c = self.spec.shape.c as u32;
        let grid = |g: u32| fold(g, self.grid_x, self.max_groups);
        // The gradient outputs on a 2-D grid too (from 683 channels one row cannot hold them),
        // the reduction chunks on z.
        let (ox, oy) = grid((c * c * 9 + c).div_ceil(WG));
        for (i, d) in list.iter().enumerate() {
            pass.set_bind_group(0, &self.bind, &[(first + i as u32) * self.job_stride]);
            let (x, y, z) = match d.kernel.grid() {
                Grid::Pixels => {
                    let (x, y) = grid((n * len).div_ceil(WG));
                    (x, y, 1)
                }
                Grid::Partial => (ox, oy, self.plan.chunks(n)),
                Grid::Finish => (ox, oy, 1),
            };
            pass.set_pipeline(self.pipe(d.kernel));
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Reads the first n examples of the given slots (and the gradient) in one copy.
    fn read(&self, slots: &[(u32, u32)], grad: bool) -> Result<Vec<Vec<f32>>> {
        let len = self.spec.shape.len() as u64;
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut parts = Vec::new();
        let mut at = 0;
        for &(s, n) in slots {
            let bytes = 4 * n as u64 * len;
            enc.copy_buffer_to_buffer(&self.fields, self.slot_bytes(s), &self.readback, at, bytes);
            parts.push((at, bytes));
            at += bytes;
        }
        if grad {
            let bytes = 4 * (self.spec.k_len() + self.spec.b_len()) as u64;
            enc.copy_buffer_to_buffer(&self.grad, 0, &self.readback, at, bytes);
            parts.push((at, bytes));
            at += bytes;
        }
        self.queue.submit([enc.finish()]);
        let all: Vec<f32> = crate::device::read_mapped(&self.device, &self.readback, at)?;
        Ok(parts.iter().map(|&(a, b)| all[(a / 4) as usize..((a + b) / 4) as usize].to_vec()).collect())
    }
}
