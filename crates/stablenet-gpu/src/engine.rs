//! The device-resident network: buffers, pipelines and bind groups built once per model shape
//! and batch capacity, and a training step recorded into one command encoder and submitted
//! once (no readback inside a step; losses are logged on the device and read per epoch).
use crate::device::{Gpu, binding_limit, read_mapped};
use crate::kernels::{KernelOptions, Plan, RuntimeChecks, StepKernels, WG};
use crate::shaders;
use crate::shaders::BatchInfo;
use anyhow::{Result, bail, ensure};
use bytemuck::{Pod, Zeroable};
use stablenet_core::data::Dataset;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Error, Integrator, ModelConfig, Params};
use wgpu::util::DeviceExt;

const CHUNK: u32 = 256;
/// Largest width: a step's matrix-vector loop runs w^2 iterations per invocation.
pub const MAX_WIDTH: usize = 128;

/// What one dispatch does; mirrors `struct Meta` in common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Meta {
    j0: u32,
    j1: u32,
    rows: u32,
    cols: u32,
    flags: u32,
    out_off: u32,
    p_off: u32,
    q_off: u32,
    r_off: u32,
    s_off: u32,
    slot: u32,
    aslot: u32,
    b_off: u32,
    b_out: u32,
    cur: u32,
    block: u32,
}

const HAS_RS: u32 = 1;
const Q_ONES: u32 = 2;
const ANTISYM: u32 = 4;
const AT_STEP: u32 = 8;
const AT_CURSOR: u32 = 16;
const WITH_BIAS: u32 = 32;
const STEP_BACK: u32 = 64;
const TILE_PARTIALS: u32 = 128;

/// The phases of a training step, in order ([`GpuNet::profile_step`]): the operator build,
/// opening and integrator steps; the classifier with the loss and its gradient sums; the
/// adjoint steps with theirs; the opening's adjoint; the regulariser and optimiser.
pub const PHASES: [&str; 5] = ["forward", "loss", "adjoint", "opening", "update"];

/// Offsets of the parameter groups in the flat parameter vector.
struct Layout {
    bin: u32,
    k: u32,
    b: u32,
    wc: u32,
    mu: u32,
    count: u32,
}

impl Layout {
    /// The kernels index the parameters in u32 (the offsets are u32 override constants too):
    /// counted wider first, so that a deep model is refused instead of its offsets wrapping.
    fn new(cfg: &ModelConfig) -> Result<Self> {
        let (d, w, n, c) = (cfg.d as u128, cfg.width as u128, cfg.steps as u128, cfg.classes as u128);
        let bin = w * d;
        let k = bin + w;
        let b = k + n * w * w;
        let wc = b + n * w;
        let mu = wc + c * w;
        let count = mu + c;
        ensure!(
            count <= u32::MAX as u128,
            "the model has {count} parameters; the GPU kernels index at most {} (u32): fewer steps, a \
             narrower net or a smaller input",
            u32::MAX
        );
        let at = |v: u128| v as u32; // each at most count
        Ok(Layout { bin: at(bin), k: at(k), b: at(b), wc: at(wc), mu: at(mu), count: at(count) })
    }
}

/// Training hyper-parameters the device needs.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub optimizer: OptimizerKind,
    pub regularizer: Regularizer,
}

/// A reduction's meta entries and bind group: rows x cols outputs, then `bias` more (the
/// bias row summed by the same job, reduce.wgsl).
#[derive(Clone, Copy)]
struct Red {
    meta: u32,
    group: usize,
    rc: u32,
    /// reduce_partial's workgroups for G (partial_groups).
    g_groups: u32,
    bias: u32,
    /// The partials come from the adjoint step (TILE_PARTIALS): only the second pass runs.
    from_step: bool,
    /// Steps the job reduces (an adjoint block when fused; else 1).
    block: u32,
}

pub struct GpuNet {
    gpu: Gpu,
    pub cfg: ModelConfig,
    nmax: u32,
    ndata: u32,
    layout: Layout,
    hyper: Option<Hyper>,
    t: u32,
    // buffers
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    opt_m: wgpu::Buffer,
    opt_v: wgpu::Buffer,
    st: wgpu::Buffer,
    /// resnet/antisym: every state; tiled Verlet with `keep`: its pre-activations.
    store: wgpu::Buffer,
    data_x: wgpu::Buffer,
    data_y: wgpu::Buffer,
    order: wgpu::Buffer,
    loss_log: wgpu::Buffer,
    hit_log: wgpu::Buffer,
    batch: wgpu::Buffer,
    readback: wgpu::Buffer,
    loss_slots: u32,
    // pipelines
    net: NetPipes,
    reduce_partial: wgpu::ComputePipeline,
    reduce_finish: wgpu::ComputePipeline,
    reduce_tiles: Option<wgpu::ComputePipeline>,
    regularize: Option<wgpu::ComputePipeline>,
    optim: Option<wgpu::ComputePipeline>,
    // bind groups
    bg_net: wgpu::BindGroup,
    bg_red: Vec<wgpu::BindGroup>,
    bg_opt: Option<wgpu::BindGroup>,
    bg_uni: wgpu::BindGroup,
    meta_stride: u32,
    /// Workgroups per grid row (the adapter's limit; lowered by the checks to exercise 2-D grids).
    grid_x: u32,
    /// Device bytes by buffer, parameter-shaped buffers marked (for the memory reports).
    memory: Vec<(&'static str, u64, bool)>,
    plan: Plan,
    /// The wgpu runtime checks the tiled module was built with.
    checks: RuntimeChecks,
    /// Tiled steps: their pipelines and bind group (tiles.wgsl).
    tiled: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline, wgpu::BindGroup)>,
    /// Floats build_ops writes (resnet/antisym operators, tiled K_j, K_j^T, b_j).
    ops_len: u32,
    // meta entries (a fixed number, whatever the depth: the step index lives on the device)
    m_plain: u32,
    m_first: u32,
    m_last: u32,
    m_next: u32,
    m_adjoint: [u32; 2],
    forward_dispatches: u32,
    /// dK_j, db_j for adjoint steps reading cursor 0 and 1 (they alternate).
    red_k: [Red; 2],
    red_cls: Red,
    red_open: Red,
    red_loss: Red,
    red_hits: Red,
}

struct NetPipes {
    open_forward: wgpu::ComputePipeline,
    steps_forward: wgpu::ComputePipeline,
    classify: wgpu::ComputePipeline,
    step_adjoint: wgpu::ComputePipeline,
    open_adjoint: wgpu::ComputePipeline,
    advance: wgpu::ComputePipeline,
    build_ops: Option<wgpu::ComputePipeline>,
}

fn groups(n: u32) -> u32 {
    n.div_ceil(WG)
}

/// reduce_partial's workgroups for G's rows x cols outputs (reduce.wgsl g_groups): one for
/// narrow nets' few, else one per 32 x 32 block, whose 8 x 8 invocations (WG = 64) sum 4 x 4
/// outputs each.
fn partial_groups(rows: u32, cols: u32) -> u32 {
    const _: () = assert!(WG == 64, "reduce.wgsl block_sums lays out 8 x 8 invocations");
    if rows * cols <= WG { 1 } else { rows.div_ceil(32) * cols.div_ceil(32) }
}

impl GpuNet {
    /// Builds everything for a model shape, a batch capacity `nmax` and a data set capacity
    /// `ndata`. `hyper` adds the regulariser and optimiser kernels (training); without it the
    /// network computes losses and gradients only.
    pub fn new(gpu: Gpu, cfg: &ModelConfig, nmax: usize, ndata: usize, hyper: Option<Hyper>) -> Result<Self> {
        Self::with_kernels(gpu, cfg, nmax, ndata, hyper, None)
    }

    /// [`GpuNet::new`], choosing the kernels that step the integrator ([`StepKernels`]; None:
    /// the engine's choice for the model and adapter). The results agree whichever runs
    /// (`cargo xtask validate` checks each one a case can run).
    pub fn with_kernels(
        gpu: Gpu,
        cfg: &ModelConfig,
        nmax: usize,
        ndata: usize,
        hyper: Option<Hyper>,
        kernels: Option<StepKernels>,
    ) -> Result<Self> {
        Self::with_options(gpu, cfg, nmax, ndata, hyper, KernelOptions { kernels, ..KernelOptions::default() })
    }

    /// [`GpuNet::with_kernels`], with the tiled steps sized as `opts.tiled` says (benchmarks
    /// time other sizes than the defaults with it).
    pub fn with_options(
        gpu: Gpu,
        cfg: &ModelConfig,
        nmax: usize,
        ndata: usize,
        hyper: Option<Hyper>,
        opts: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        ensure!(nmax > 0 && ndata > 0, "empty batch or data set");
        // Examples are indexed in u32 on the device (the buffer checks below bound them further).
        ensure!(
            nmax <= u32::MAX as usize && ndata <= u32::MAX as usize,
            "batch of {nmax} or data set of {ndata} examples: the GPU kernels index at most {} (u32)",
            u32::MAX
        );
        if cfg.width > MAX_WIDTH {
            bail!("the GPU backend supports width up to {MAX_WIDTH}, the model has {}", cfg.width);
        }
        let lim = &gpu.limits;
        // Per-example kernels run on a 2-D grid of workgroups; reductions put chunks on z.
        let max_groups = lim.max_compute_workgroups_per_dimension as usize;
        let chunk_rows = nmax.div_ceil(CHUNK as usize);
        if nmax.div_ceil(WG as usize) > max_groups * max_groups || chunk_rows > max_groups {
            bail!(
                "batch of {nmax} examples needs {chunk_rows} reduction chunks, above this adapter's \
                 max_compute_workgroups_per_dimension = {max_groups}; use smaller batches"
            );
        }
        if lim.max_storage_buffers_per_shader_stage < 16 {
            bail!(
                "the network kernels bind 16 storage buffers; this adapter allows {} \
                 (max_storage_buffers_per_shader_stage)",
                lim.max_storage_buffers_per_shader_stage
            );
        }
        let (d, w, n, c) = (cfg.d as u32, cfg.width as u32, cfg.steps as u32, cfg.classes as u32);
        let euler = matches!(cfg.integrator, Integrator::Resnet | Integrator::Antisym);
        let layout = Layout::new(cfg)?;
        let nm = nmax as u64;
        let slot = nm * w as u64;
        let plan = Plan::new(cfg, nmax as u32, lim, gpu.is_software(), opts.kernels, opts.tiled)?;
        // Resnet and antisym keep the state before every step; tiled Verlet with `keep` its two
        // pre-activations.
        let store_len = match (euler, plan.keep) {
            (true, _) => n as u64 * slot,
            (false, true) => 2 * n as u64 * slot,
            _ => 1,
        }
        .next_multiple_of(4); // a whole number of vec4s, as bound to the tiled steps
        let chunks = nmax.div_ceil(CHUNK as usize) as u64;
        let max_rc = [w * w + w, c * w + c, w * d + w].into_iter().max().unwrap_or(1) as u64;
        let (fuse, tiled) = (plan.kernels == StepKernels::Fused, plan.kernels == StepKernels::Tiled);
        let block = plan.block;
        // A whole number of vec4s: the tiled steps also bind the partials as vec4 rows.
        let partials = (chunks * max_rc).max(plan.partials).next_multiple_of(4);
        // The factors P, Q, R, S, B of every example: per-example steps only; fused and tiled
        // ones sum them in workgroup memory, and only the opening's P is left (open_adjoint).
        // The scratch slot: leapfrog, resnet and antisym.
        let fac_len = if fuse || tiled { slot } else { 5 * slot };
        let tmp_len = if cfg.integrator == Integrator::Hamiltonian { 1 } else { slot };
        let ops_len = match (euler, tiled) {
            (_, true) => shaders::tiled_operators(cfg.steps, cfg.width),
            (true, false) => n as u64 * w as u64 * w as u64,
            _ => 1,
        };
        // Each buffer with what makes it smaller.
        let batch = "a smaller batch";
        let stored = if euler {
            "a smaller batch, fewer steps, or a reversible integrator"
        } else {
            "a smaller batch, fewer steps, or the pre-activations rebuilt in reverse time (a gradient method other \
             than stored; keep=0)"
        };
        let sizes: [(&str, u64, &str); 13] = [
            ("params", layout.count as u64, "a smaller model"),
            ("data x", ndata as u64 * d as u64, "a smaller data set"),
            ("states", 2 * slot, batch),
            ("adjoints", 3 * slot, batch),
            ("gradient factors", fac_len, batch),
            ("stored states (resnet/antisym: every state; Verlet keep: the pre-activations)", store_len, stored),
            ("operators", ops_len, "fewer steps or a narrower net"),
            ("logits", nm * c as u64, batch),
            ("batch inputs", nm * d as u64, batch),
            ("reduction partials", partials, batch),
            ("scratch", tmp_len, batch),
            ("labels", ndata as u64, "a smaller data set"),
            ("loss", nm, batch),
        ];
        for (what, len, smaller) in sizes {
            let bytes = 4 * len;
            // The kernels index in u32 (floats; the tiled operators in vec4).
            let cap = binding_limit(lim).min(4 * u32::MAX as u64);
            if bytes > cap {
                bail!(
                    "the {what} buffer needs {bytes} bytes, above this adapter's storage binding \
                     limit of {cap} bytes (max_storage_buffer_binding_size / max_buffer_size, and u32 indices); use {smaller}"
                );
            }
        }
        let dev = &gpu.device;
        let memory = std::cell::RefCell::new(Vec::new());
        let buf = |label: &'static str, len: u64| {
            let param_shaped = matches!(label, "params" | "grads" | "optimizer m" | "optimizer v" | "operators");
            memory.borrow_mut().push((label, 4 * len.max(1), param_shaped));
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 4 * len.max(1),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let params = buf("params", layout.count as u64);
        let grads = buf("grads", layout.count as u64);
        let opt_m = buf("optimizer m", layout.count as u64);
        let opt_v = buf("optimizer v", layout.count as u64);
        let data_x = buf("data x", ndata as u64 * d as u64);
        let data_y = buf("data y", ndata as u64);
        let order = buf("order", ndata as u64);
        let xb = buf("xb", nm * d as u64);
        // Whole vec4s: the tiled steps bind both as vec4 rows too (tiles.wgsl load4).
        let st = buf("states", (2 * slot).next_multiple_of(4));
        let acc = buf("adjoints", (3 * slot).next_multiple_of(4));
        let tmp = buf("scratch", tmp_len);
        let fac = buf("factors", fac_len);
        let store = buf("stored states", store_len);
        let ops = buf("operators", ops_len);
        // Below u32::MAX floats, by the check above.
        let ops_len = ops_len as u32;
        let dlog = buf("dlogits", nm * c as u64);
        let loss_s = buf("loss per example", nm);
        let hits = buf("hits per example", nm);
        let cursor = buf("step cursors", 2);
        let partial = buf("partials", partials);
        let loss_slots = ndata as u32; // at most one training step per example and epoch
        let loss_log = buf("loss log", loss_slots as u64);
        let hit_log = buf("hit log", loss_slots as u64);
        let batch = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batch"),
            size: std::mem::size_of::<BatchInfo>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // One host-readable buffer for every readback. It is counted in two parts: what the
        // logs and states need (the same at any depth), and what reading the parameters needs
        // beyond that (parameter-shaped, it grows with N as they do).
        let flat = (loss_slots as u64).max(2 * slot);
        let readback_len = (layout.count as u64).max(flat);
        memory.borrow_mut().push(("readback", 4 * flat, false));
        memory.borrow_mut().push(("readback of the parameters", 4 * (readback_len - flat), true));
        let readback = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: 4 * readback_len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // Meta table: one aligned entry per distinct dispatch.
        let align = lim.min_uniform_buffer_offset_alignment;
        let meta_stride = (std::mem::size_of::<Meta>() as u32).div_ceil(align) * align;
        let mut metas: Vec<Meta> = Vec::new();
        let mut push = |m: Meta| {
            metas.push(m);
            (metas.len() - 1) as u32
        };
        let leap = cfg.integrator == Integrator::Leapfrog;
        let slot_n = if leap { n % 2 } else { 0 };
        let aslot_n = if leap { n % 3 } else { 0 };
        let plain = Meta { slot: slot_n, aslot: aslot_n, ..Meta::default() };
        let m_plain = push(plain);
        let spd = plan.spd;
        let forward_dispatches = n.div_ceil(spd);
        // Step cursor 0: set to 0, advance by spd; then set to N - 1 for the first adjoint step,
        // after which each adjoint step's reduction sets the other cursor (reduce.wgsl).
        let m_first = push(Meta { j0: 0, ..Meta::default() });
        let m_next = push(Meta { j0: spd, flags: 1, ..Meta::default() });
        let m_last = push(Meta { j0: n - 1, ..Meta::default() });
        let m_adjoint = [m_plain, push(Meta { cur: 1, ..plain })];
        let sl = slot as u32;
        let (fp, fq, fr, fs, fb) = (0, sl, 2 * sl, 3 * sl, 4 * sl);
        let red = |push: &mut dyn FnMut(Meta) -> u32, group: usize, m: Meta| Red {
            meta: push(m),
            group,
            rc: m.rows * m.cols,
            g_groups: partial_groups(m.rows, m.cols),
            bias: if m.flags & WITH_BIAS != 0 { m.rows } else { 0 },
            from_step: m.flags & TILE_PARTIALS != 0,
            block: m.block.max(1),
        };
        let rs = if euler { 0 } else { HAS_RS };
        let anti = if cfg.integrator == Integrator::Antisym { ANTISYM } else { 0 };
        // dK_j with db_j, W with mu, K_in with b_in: each pair in one job.
        let k_meta = Meta {
            j0: plan.per_partial,
            j1: w * w,
            rows: w,
            cols: w,
            flags: rs | anti | AT_CURSOR | WITH_BIAS | STEP_BACK | if fuse || tiled { TILE_PARTIALS } else { 0 },
            block,
            out_off: layout.k,
            p_off: fp,
            q_off: fq,
            r_off: fr,
            s_off: fs,
            b_off: fb,
            b_out: layout.b,
            ..Meta::default()
        };
        let red_k = [red(&mut push, 0, k_meta), red(&mut push, 0, Meta { cur: 1, ..k_meta })];
        let cls = Meta {
            rows: c,
            cols: w,
            flags: WITH_BIAS,
            out_off: layout.wc,
            q_off: slot_n * sl,
            b_out: layout.mu,
            ..Meta::default()
        };
        let red_cls = red(&mut push, 1, cls);
        let open =
            Meta { rows: w, cols: d, flags: WITH_BIAS, p_off: fp, b_off: fp, b_out: layout.bin, ..Meta::default() };
        let red_open = red(&mut push, 2, open);
        let red_loss = red(&mut push, 3, Meta { rows: 1, cols: 1, flags: Q_ONES | AT_STEP, ..Meta::default() });
        let red_hits = red(&mut push, 4, Meta { rows: 1, cols: 1, flags: Q_ONES | AT_STEP, ..Meta::default() });
        let mut meta_bytes = vec![0u8; metas.len() * meta_stride as usize];
        for (i, m) in metas.iter().enumerate() {
            let at = i * meta_stride as usize;
            meta_bytes[at..at + std::mem::size_of::<Meta>()].copy_from_slice(bytemuck::bytes_of(m));
        }
        let meta_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("meta"),
            contents: &meta_bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });

        // Layouts.
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bgl = |label: &str, entries: &[wgpu::BindGroupLayoutEntry]| {
            dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries })
        };
        let net_entries: Vec<_> = (0..16).map(|b| storage(b, b < 4)).collect();
        let bgl_net = bgl("network", &net_entries);
        let red_entries: Vec<_> = (0..7).map(|b| storage(b, b < 4)).collect();
        let bgl_red = bgl("reduce", &red_entries);
        // st, acc, the partials and the kept states again as vec4 rows (tiles.wgsl st4, acc4,
        // tpart4, kept4).
        let tile_entries: Vec<_> = (0..10).map(|b| storage(b, b < 1)).collect();
        let bgl_tile = bgl("tiled steps", &tile_entries);
        let opt_entries: Vec<_> = (0..4).map(|b| storage(b, false)).collect();
        let bgl_opt = bgl("optim", &opt_entries);
        let uniform = |binding: u32, dynamic: bool, size: u64| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: dynamic,
                min_binding_size: wgpu::BufferSize::new(size),
            },
            count: None,
        };
        let bgl_uni = bgl(
            "uniforms",
            &[
                uniform(0, true, std::mem::size_of::<Meta>() as u64),
                uniform(1, false, std::mem::size_of::<BatchInfo>() as u64),
            ],
        );
        let pipeline_layout = |g0: &wgpu::BindGroupLayout| {
            dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(g0), Some(&bgl_uni)],
                immediate_size: 0,
            })
        };
        let pl_net = pipeline_layout(&bgl_net);
        let pl_red = pipeline_layout(&bgl_red);
        let pl_tile = pipeline_layout(&bgl_tile);
        let pl_opt = pipeline_layout(&bgl_opt);

        // Pipelines: shapes go in as override constants.
        let act = match cfg.activation {
            Activation::Tanh => 0.0,
            Activation::Relu => 1.0,
        };
        let integ = match cfg.integrator {
            Integrator::Resnet => 0.0,
            Integrator::Antisym => 1.0,
            Integrator::Hamiltonian => 2.0,
            Integrator::Leapfrog => 3.0,
        };
        let h = cfg.h();
        let net_consts: Vec<(&str, f64)> = vec![
            ("WG", WG as f64),
            ("ACT", act),
            ("D", d as f64),
            ("C", c as f64),
            ("N", n as f64),
            ("NMAX", nmax as f64),
            ("H", h),
            ("GAMMA", cfg.gamma),
            ("INTEG", integ),
            ("SPD", spd as f64),
            ("FUSE", if fuse { 1.0 } else { 0.0 }),
            ("ADJ_BLOCK", block as f64),
            ("TILED", if tiled { 1.0 } else { 0.0 }),
        ];
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = |label: &str, src: String| {
            dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let net_mod = module("network", shaders::network(cfg.integrator, cfg.width, plan.tf_len, plan.kc_len));
        let red_mod = module("reduce", shaders::reduce());
        let opt_mod = module("optim", shaders::optim());
        let pipe = |layout: &wgpu::PipelineLayout, m: &wgpu::ShaderModule, entry: &str, consts: &[(&str, f64)]| {
            gpu.compute_pipeline(Some(layout), m, entry, consts)
        };
        let net = NetPipes {
            open_forward: pipe(&pl_net, &net_mod, "open_forward", &net_consts),
            steps_forward: pipe(&pl_net, &net_mod, "steps_forward", &net_consts),
            classify: pipe(&pl_net, &net_mod, "classify", &net_consts),
            step_adjoint: pipe(&pl_net, &net_mod, "step_adjoint", &net_consts),
            open_adjoint: pipe(&pl_net, &net_mod, "open_adjoint", &net_consts),
            advance: pipe(&pl_net, &net_mod, "advance", &net_consts),
            build_ops: (euler || tiled).then(|| pipe(&pl_net, &net_mod, "build_ops", &net_consts)),
        };
        let tile_pipes = tiled.then(|| {
            let src = shaders::tiled(cfg.integrator, cfg.width, plan.rq as usize, plan.db as usize, plan.keep);
            let m = if opts.tiled.checks == RuntimeChecks::All {
                module("tiled steps", src)
            } else {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some("tiled steps (trusted)"),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                };
                // SAFETY: every index in tiles.wgsl and the steps' files stays inside its array
                // or binding: workgroup-array indices from the invocation's (r, c) and the
                // constants WP, RQ; buffer indices guarded by the batch and width (ld, put,
                // row4, put_row4, put_row inside the width) or
                // bounded by the step count and the partials' size, which come from the `Plan`
                // that sized the bindings. Every loop has a constant or uniform bound. `xtask
                // validate` runs this module against the CPU twin.
                unsafe { dev.create_shader_module_trusted(desc, opts.tiled.checks.wgpu()) }
            };
            let consts = [
                ("ACT", act),
                ("N", n as f64),
                ("NMAX", nmax as f64),
                ("H", h),
                ("SPD", spd as f64),
                ("TBLOCK", block as f64),
                ("TPW", plan.tpw as f64),
            ];
            let forward = if plan.fblock == 8 { "tile_forward8" } else { "tile_forward" };
            let adjoint = if plan.ablock == 8 { "tile_adjoint8" } else { "tile_adjoint" };
            (pipe(&pl_tile, &m, forward, &consts), pipe(&pl_tile, &m, adjoint, &consts))
        });
        let wg = [("WG", WG as f64)];
        let reduce_partial = pipe(&pl_red, &red_mod, "reduce_partial", &wg);
        let reduce_finish = pipe(&pl_red, &red_mod, "reduce_finish", &wg);
        let lanes = [("WG", WG as f64), ("TLANES", plan.reduce_lanes as f64)];
        let reduce_tiles = tiled.then(|| pipe(&pl_red, &red_mod, "reduce_tiles", &lanes));
        let (mut regularize, mut optim) = (None, None);
        if let Some(hp) = hyper {
            hp.optimizer.validate()?;
            hp.regularizer.validate()?;
            let (momentum, beta1, beta2, eps) = match hp.optimizer {
                OptimizerKind::Sgd { momentum, .. } => (momentum, 0.9, 0.999, 1e-8),
                OptimizerKind::Adam { beta1, beta2, eps, .. } => (0.0, beta1, beta2, eps),
            };
            let consts: Vec<(&str, f64)> = vec![
                ("WG", WG as f64),
                ("W", w as f64),
                ("D", d as f64),
                ("C", c as f64),
                ("N", n as f64),
                ("H", h),
                ("ALPHA_T", hp.regularizer.alpha_t),
                ("ALPHA_W", hp.regularizer.alpha_w),
                ("MOMENTUM", momentum),
                ("BETA1", beta1),
                ("BETA2", beta2),
                ("EPS", eps),
            ];
            if !hp.regularizer.is_zero() {
                regularize = Some(pipe(&pl_opt, &opt_mod, "regularize", &consts));
            }
            let entry = match hp.optimizer {
                OptimizerKind::Sgd { .. } => "sgd",
                OptimizerKind::Adam { .. } => "adam",
            };
            optim = Some(pipe(&pl_opt, &opt_mod, entry, &consts));
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("building the GPU kernels failed on {}: {e}", gpu.describe());
        }

        let bind = |layout: &wgpu::BindGroupLayout, bufs: &[&wgpu::Buffer]| {
            let entries: Vec<wgpu::BindGroupEntry> = bufs
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                .collect();
            dev.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout, entries: &entries })
        };
        let bg_net = bind(
            &bgl_net,
            &[
                &params, &data_x, &data_y, &order, &xb, &st, &acc, &tmp, &fac, &store, &ops, &dlog, &loss_s, &hits,
                &cursor, &partial,
            ],
        );
        // st, acc, the partials and the kept states twice, as f32 and as vec4 rows. Native wgpu
        // (Vulkan, Metal, DX12) allows one buffer in two writable bindings; the WebGPU spec does
        // not, so a browser would refuse these. Within a dispatch the kernels reach each region
        // through one of its two bindings only (tiles.wgsl), since the two are not coherent.
        let tile_bufs = [&ops, &st, &acc, &partial, &cursor, &store, &st, &acc, &partial, &store];
        let tiled = tile_pipes.map(|(f, a)| (f, a, bind(&bgl_tile, &tile_bufs)));
        let bg_red = vec![
            bind(&bgl_red, &[&fac, &fac, &fac, &fac, &partial, &grads, &cursor]),
            bind(&bgl_red, &[&dlog, &st, &dlog, &dlog, &partial, &grads, &cursor]),
            bind(&bgl_red, &[&fac, &xb, &fac, &fac, &partial, &grads, &cursor]),
            bind(&bgl_red, &[&loss_s, &loss_s, &loss_s, &loss_s, &partial, &loss_log, &cursor]),
            bind(&bgl_red, &[&hits, &hits, &hits, &hits, &partial, &hit_log, &cursor]),
        ];
        let bg_opt = hyper.map(|_| bind(&bgl_opt, &[&params, &grads, &opt_m, &opt_v]));
        let bg_uni = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("uniforms"),
            layout: &bgl_uni,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &meta_buf,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<Meta>() as u64),
                    }),
                },
                wgpu::BindGroupEntry { binding: 1, resource: batch.as_entire_binding() },
            ],
        });
        Ok(GpuNet {
            gpu,
            cfg: cfg.clone(),
            nmax: nmax as u32,
            ndata: ndata as u32,
            layout,
            hyper,
            t: 0,
            params,
            grads,
            opt_m,
            opt_v,
            st,
            store,
            data_x,
            data_y,
            order,
            loss_log,
            hit_log,
            batch,
            readback,
            loss_slots,
            net,
            reduce_partial,
            reduce_finish,
            reduce_tiles,
            regularize,
            optim,
            bg_net,
            bg_red,
            bg_opt,
            bg_uni,
            meta_stride,
            grid_x: max_groups.max(1) as u32,
            memory: {
                let mut m = memory.into_inner();
                m.push(("meta", meta_bytes.len() as u64, false));
                m
            },
            plan,
            checks: opts.tiled.checks,
            tiled,
            ops_len,
            m_plain,
            m_first,
            m_last,
            m_next,
            m_adjoint,
            forward_dispatches,
            red_k,
            red_cls,
            red_open,
            red_loss,
            red_hits,
        })
    }

    /// Caps the workgroups per grid row, so that small batches exercise the 2-D grids that
    /// only batches beyond 65535 workgroups need otherwise (validation).
    pub fn limit_grid(&mut self, x: u32) {
        self.grid_x = x.clamp(1, self.gpu.limits.max_compute_workgroups_per_dimension.max(1));
    }

    /// The kernels that step the integrator (see [`GpuNet::with_kernels`]).
    pub fn kernels(&self) -> StepKernels {
        self.plan.kernels
    }

    pub(crate) fn plan(&self) -> Plan {
        self.plan
    }

    /// The edge of the tiled Verlet forward's blocks (8: tile_forward8); 4 otherwise.
    pub fn forward_block(&self) -> u32 {
        self.plan.fblock
    }

    /// The edge of the tiled Verlet adjoint's blocks (8: tile_adjoint8); 4 otherwise.
    pub fn adjoint_block(&self) -> u32 {
        self.plan.ablock
    }

    /// Whether the tiled Verlet forward keeps its pre-activations for the adjoint
    /// ([`TiledTuning::keep`](crate::TiledTuning)).
    pub fn keeps_pre_activations(&self) -> bool {
        self.plan.keep
    }

    /// The step kernels' sizes, for benchmark records: adjoint steps and forward steps per
    /// dispatch, and for tiled steps the examples per tile, invocations per workgroup, tiles
    /// per adjoint workgroup and the gradient block edge.
    pub fn kernel_sizes(&self) -> String {
        let p = &self.plan;
        let mut s = format!("{} adjoint block {}, forward {} steps per dispatch", p.kernels.name(), p.block, p.spd);
        if p.kernels == StepKernels::Tiled {
            let wp = shaders::padded(self.cfg.width) as u32;
            s += &format!(
                "; tiles of {} examples, {} invocations per workgroup, tiles per adjoint workgroup {}, \
                 gradient blocks {}x{}",
                4 * p.rq,
                wp / 4 * p.rq,
                p.tpw,
                p.db,
                p.db
            );
            // Always named: the default changed (all before H100 run 8, bounds since).
            s += &format!(", wgpu runtime checks: {}", self.checks.name());
            if p.fblock == 8 {
                s += ", forward blocks 8x8";
            }
            if p.ablock == 8 {
                s += ", adjoint blocks 8x8";
            }
            if p.keep {
                s += ", pre-activations kept";
            }
        }
        s
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn into_gpu(self) -> Gpu {
        self.gpu
    }

    /// Device bytes a training step needs beyond the parameters (and their gradients and
    /// optimiser state): states, adjoints, factors, partial sums, the data set, uniforms.
    pub fn work_bytes(&self) -> u64 {
        self.memory.iter().filter(|m| !m.2).map(|m| m.1).sum()
    }

    /// Device bytes of the parameter-shaped buffers beyond the parameters (gradient,
    /// optimiser state, operators): what [`GpuNet::work_bytes`] leaves out.
    pub fn state_bytes(&self) -> u64 {
        self.memory.iter().filter(|m| m.2 && m.0 != "params").map(|m| m.1).sum()
    }

    /// Every device buffer and its size in bytes.
    pub fn buffers(&self) -> &[(&'static str, u64, bool)] {
        &self.memory
    }

    /// Uploads parameters (row-major groups in model-file order).
    pub fn set_params(&self, p: &Params<f32>) -> Result<()> {
        p.check_shape(&self.cfg)?;
        let flat: Vec<f32> = p.groups().iter().flat_map(|(_, v)| v.iter().copied()).collect();
        self.gpu.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&flat));
        Ok(())
    }

    /// Uploads a data set (at most the capacity given at construction) and the identity order.
    pub fn set_data(&mut self, data: &Dataset) -> Result<()> {
        data.validate()?;
        // Bad input keeps its kind (shape, data) through the trainers (`core_error`).
        if data.d != self.cfg.d {
            return Err(Error::Shape(format!("data has d = {} but the model expects {}", data.d, self.cfg.d)).into());
        }
        if data.classes > self.cfg.classes {
            let (got, want) = (data.classes, self.cfg.classes);
            return Err(Error::Data(format!("data has {got} classes, more than the model's {want}")).into());
        }
        if data.len() as u64 > u64::from(self.ndata) {
            let (got, cap) = (data.len(), self.ndata);
            return Err(Error::Data(format!("data set of {got} examples, above the device capacity of {cap}")).into());
        }
        let q = &self.gpu.queue;
        q.write_buffer(&self.data_x, 0, bytemuck::cast_slice(&data.x));
        q.write_buffer(&self.data_y, 0, bytemuck::cast_slice(&data.labels));
        let order: Vec<u32> = (0..data.len() as u32).collect();
        self.set_order(&order)
    }

    /// The example order of an epoch (positions into the uploaded data set).
    pub fn set_order(&mut self, order: &[u32]) -> Result<()> {
        ensure!(order.len() as u64 <= u64::from(self.ndata), "order longer than the data set");
        self.gpu.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(order));
        Ok(())
    }

    /// A 2-D grid covering `n` invocations: per-example kernels (`example()` in common.wgsl)
    /// fold y back into the example index, so batches beyond one dimension's limit still run.
    fn grid(&self, n: u32) -> (u32, u32) {
        self.grid_of(groups(n))
    }

    /// A 2-D grid of `g` workgroups (rows wide enough that the rows fit the limit too).
    fn grid_of(&self, g: u32) -> (u32, u32) {
        let max = self.gpu.limits.max_compute_workgroups_per_dimension.max(1);
        let x = g.min(self.grid_x).max(g.div_ceil(max)).max(1);
        (x, g.div_ceil(x))
    }

    /// The tiled forward's grid: one workgroup per tile of 4 rq examples; the adjoint's: one
    /// per `tpw` tiles.
    fn tile_grid(&self, n: u32, adjoint: bool) -> (u32, u32) {
        let tiles = n.div_ceil(4 * self.plan.rq.max(1));
        self.grid_of(if adjoint { tiles.div_ceil(self.plan.tpw.max(1)) } else { tiles })
    }

    fn dispatch(&self, pass: &mut wgpu::ComputePass, pipe: &wgpu::ComputePipeline, meta: u32, x: u32, y: u32) {
        self.dispatch_z(pass, pipe, meta, (x, y), 1);
    }

    fn dispatch_z(
        &self,
        pass: &mut wgpu::ComputePass,
        pipe: &wgpu::ComputePipeline,
        meta: u32,
        (x, y): (u32, u32),
        z: u32,
    ) {
        pass.set_pipeline(pipe);
        pass.set_bind_group(1, &self.bg_uni, &[meta * self.meta_stride]);
        pass.dispatch_workgroups(x, y, z);
    }

    fn reduce(&self, pass: &mut wgpu::ComputePass, r: Red, n: u32) {
        pass.set_bind_group(0, &self.bg_red[r.group], &[]);
        // reduce_partial: G's workgroups, then the bias row's, on a 2-D grid (one row cannot
        // hold them for a wide enough opening or classifier); the chunks on z.
        if !r.from_step {
            let grid = self.grid_of(r.g_groups + groups(r.bias));
            self.dispatch_z(pass, &self.reduce_partial, r.meta, grid, n.div_ceil(CHUNK));
        }
        let outputs = (r.rc + r.bias) * r.block;
        // The tiled steps' partials (reduce_tiles exists only for them).
        if let Some(p) = self.reduce_tiles.as_ref().filter(|_| r.from_step) {
            // reduce_tiles: 256 / TLANES outputs per workgroup.
            let (x, y) = self.grid_of(outputs.div_ceil(256 / self.plan.reduce_lanes));
            self.dispatch(pass, p, r.meta, x, y);
        } else {
            // reduce_finish: one workgroup per output (and step of the block).
            let (x, y) = self.grid_of(outputs);
            self.dispatch(pass, &self.reduce_finish, r.meta, x, y);
        }
    }

    /// Records the operator build (resnet/antisym, tiled), the opening layer and the forward
    /// steps.
    fn record_forward(&self, pass: &mut wgpu::ComputePass, n: u32) {
        let (gx, gy) = self.grid(n);
        let net = &self.net;
        pass.set_bind_group(0, &self.bg_net, &[]);
        if let Some(p) = &net.build_ops {
            let (x, y) = self.grid(self.ops_len);
            self.dispatch(pass, p, self.m_plain, x, y);
        }
        self.dispatch(pass, &net.open_forward, self.m_plain, gx, gy);
        self.dispatch(pass, &net.advance, self.m_first, 1, 1);
        for _ in 0..self.forward_dispatches {
            if let Some((forward, _, bg)) = &self.tiled {
                let (tx, ty) = self.tile_grid(n, false);
                pass.set_bind_group(0, bg, &[]);
                self.dispatch(pass, forward, self.m_plain, tx, ty);
                pass.set_bind_group(0, &self.bg_net, &[]);
            } else {
                self.dispatch(pass, &net.steps_forward, self.m_plain, gx, gy);
            }
            self.dispatch(pass, &net.advance, self.m_next, 1, 1);
        }
    }

    /// Records forward, loss, adjoint and reductions (and the update when training) for the
    /// batch of `n` examples at `offset` in the current order: one compute pass, or with a
    /// `timer` one pass per phase of [`PHASES`], timestamps at its start and end.
    fn record(&self, enc: &mut wgpu::CommandEncoder, n: u32, update: bool, timer: Option<&wgpu::QuerySet>) {
        let phases = if update { PHASES.len() } else { PHASES.len() - 1 };
        let Some(query_set) = timer else {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            for phase in 0..phases {
                self.record_phase(&mut pass, phase, n);
            }
            return;
        };
        for (phase, label) in PHASES.iter().enumerate().take(phases) {
            let writes = wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(2 * phase as u32),
                end_of_pass_write_index: Some(2 * phase as u32 + 1),
            };
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: Some(writes),
            });
            self.record_phase(&mut pass, phase, n);
        }
    }

    /// Phase `phase` of [`PHASES`]; each sets the bind groups it uses.
    fn record_phase(&self, pass: &mut wgpu::ComputePass, phase: usize, n: u32) {
        let (gx, gy) = self.grid(n);
        let net = &self.net;
        match phase {
            0 => self.record_forward(pass, n),
            1 => {
                pass.set_bind_group(0, &self.bg_net, &[]);
                self.dispatch(pass, &net.classify, self.m_plain, gx, gy);
                self.reduce(pass, self.red_loss, n);
                self.reduce(pass, self.red_hits, n);
                self.reduce(pass, self.red_cls, n);
            }
            2 => {
                pass.set_bind_group(0, &self.bg_net, &[]);
                self.dispatch(pass, &net.advance, self.m_last, 1, 1);
                // Three dependent dispatches per step: the step, and its reduction's two
                // passes (the second also steps the other cursor back). Fused and tiled: two
                // per block of steps, whose dispatch also does the first pass.
                let block = self.plan.block as usize;
                for i in 0..self.cfg.steps.div_ceil(block) {
                    if let Some((_, adjoint, bg)) = &self.tiled {
                        let (tx, ty) = self.tile_grid(n, true);
                        pass.set_bind_group(0, bg, &[]);
                        self.dispatch(pass, adjoint, self.m_adjoint[i % 2], tx, ty);
                    } else {
                        pass.set_bind_group(0, &self.bg_net, &[]);
                        self.dispatch(pass, &net.step_adjoint, self.m_adjoint[i % 2], gx, gy);
                    }
                    self.reduce(pass, self.red_k[i % 2], n);
                }
            }
            3 => {
                pass.set_bind_group(0, &self.bg_net, &[]);
                self.dispatch(pass, &net.open_adjoint, self.m_plain, gx, gy);
                self.reduce(pass, self.red_open, n);
            }
            _ => {
                let bg = self.bg_opt.as_ref().expect("training kernels built");
                pass.set_bind_group(0, bg, &[]);
                let count = self.layout.count;
                let (x, y) = self.grid(count);
                if let Some(p) = &self.regularize {
                    self.dispatch(pass, p, self.m_plain, x, y);
                }
                let p = self.optim.as_ref().expect("training kernels built");
                self.dispatch(pass, p, self.m_plain, x, y);
            }
        }
    }

    /// Checks the batch and queues its uniforms; `t` is the optimiser step it runs as.
    fn write_batch(&self, n: usize, offset: usize, step: u32, t: u32) -> Result<u32> {
        ensure!(n > 0 && n <= self.nmax as usize, "batch of {n} examples (capacity {})", self.nmax);
        ensure!(offset.checked_add(n).is_some_and(|end| end <= self.ndata as usize), "batch runs past the data set");
        ensure!(step < self.loss_slots, "loss log full");
        let optimizer = self.hyper.map(|hp| BatchInfo::optimizer(hp.optimizer, t));
        let info = BatchInfo {
            n: n as u32,
            offset: offset as u32,
            step,
            ..optimizer.unwrap_or(BatchInfo { t, ..BatchInfo::default() })
        };
        self.gpu.queue.write_buffer(&self.batch, 0, bytemuck::bytes_of(&info));
        Ok(n as u32)
    }

    /// One training step on the batch at `offset..offset + n` of the current order; its loss
    /// goes to slot `step` of the loss log. One encoder, one submit, no readback.
    pub fn train_step(&mut self, offset: usize, n: usize, step: u32) -> Result<()> {
        ensure!(self.hyper.is_some(), "this network was built without training kernels");
        // The step counts (Adam's bias correction) only once the batch is accepted.
        let n = self.write_batch(n, offset, step, self.t + 1)?;
        self.t += 1;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(&mut enc, n, true, None);
        self.gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// [`Self::train_step`] with each phase of [`PHASES`] in its own compute pass, timed on
    /// the device: seconds per phase, or None where the device writes no timestamps. For
    /// benchmarks: it reads back, and builds its query set each call.
    pub fn profile_step(&mut self, offset: usize, n: usize, step: u32) -> Result<Option<Vec<(&'static str, f64)>>> {
        ensure!(self.hyper.is_some(), "this network was built without training kernels");
        if !self.gpu.timestamps {
            return Ok(None);
        }
        let n = self.write_batch(n, offset, step, self.t + 1)?;
        self.t += 1;
        let dev = &self.gpu.device;
        let count = 2 * PHASES.len() as u32;
        let query_set =
            dev.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count });
        let bytes = 8 * count as u64;
        let buffer = |usage| {
            dev.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage, mapped_at_creation: false })
        };
        let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let host = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut enc = dev.create_command_encoder(&Default::default());
        self.record(&mut enc, n, true, Some(&query_set));
        enc.resolve_query_set(&query_set, 0..count, &resolved, 0);
        enc.copy_buffer_to_buffer(&resolved, 0, &host, 0, bytes);
        self.gpu.queue.submit([enc.finish()]);
        let ticks: Vec<u64> = read_mapped(dev, &host, bytes)?;
        let tick = f64::from(self.gpu.queue.get_timestamp_period()) * 1e-9;
        Ok(Some(
            PHASES
                .iter()
                .zip(ticks.chunks_exact(2))
                .map(|(p, t)| (*p, t[1].saturating_sub(t[0]) as f64 * tick))
                .collect(),
        ))
    }

    /// Runs only the opening layer and the forward steps and reads back the final state y_N
    /// (n x w), for checking the forward kernels.
    pub fn forward(&self, offset: usize, n: usize) -> Result<Vec<f32>> {
        let n = self.write_batch(n, offset, 0, self.t)?;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            self.record_forward(&mut pass, n);
        }
        self.gpu.queue.submit([enc.finish()]);
        self.read_state(self.final_slot(), n as usize)
    }

    /// The state slot holding y_N after the forward pass (leapfrog: N % 2).
    fn final_slot(&self) -> u32 {
        if self.cfg.integrator == Integrator::Leapfrog { self.cfg.steps as u32 % 2 } else { 0 }
    }

    /// Reads state slot `slot` (n x w). After [`Self::loss_grad`] slot 0 holds the y_0 that the
    /// adjoint pass rebuilt in reverse time (hamiltonian, leapfrog).
    pub fn read_state(&self, slot: u32, n: usize) -> Result<Vec<f32>> {
        ensure!(slot < 2 && n <= self.nmax as usize, "state slot {slot} of 2 or {n} examples of {}", self.nmax);
        let w = self.cfg.width;
        self.read_at(&self.st, slot as usize * self.nmax as usize * w, n * w)
    }

    /// With the pre-activations kept ([`GpuNet::keeps_pre_activations`]), those of the last
    /// forward pass in slot `slot` (n x w): 2 j holds K_j^T y_j + b_j, 2 j + 1 K_j z_{j+1} + b_j.
    pub fn read_kept(&self, slot: u32, n: usize) -> Result<Vec<f32>> {
        let steps = self.cfg.steps as u32;
        ensure!(self.plan.keep, "this network keeps no pre-activations (TiledTuning::keep)");
        ensure!(
            slot < 2 * steps && n <= self.nmax as usize,
            "slot {slot} of {} or {n} examples of {}",
            2 * steps,
            self.nmax
        );
        let (w, at) = (self.cfg.width, slot as usize * self.nmax as usize * self.cfg.width);
        self.read_at(&self.store, at, n * w)
    }

    /// Loss and gradient of the batch `offset..offset + n` (no update); reads back.
    pub fn loss_grad(&self, offset: usize, n: usize) -> Result<(f32, Params<f32>)> {
        let n = self.write_batch(n, offset, 0, self.t)?;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(&mut enc, n, false, None);
        self.gpu.queue.submit([enc.finish()]);
        let loss = self.read(&self.loss_log, 1)?[0];
        let grads = self.read(&self.grads, self.layout.count as usize)?;
        Ok((loss, self.unflatten(&grads)))
    }

    /// The losses logged by the last `count` training steps (slots 0..count).
    pub fn losses(&self, count: usize) -> Result<Vec<f32>> {
        self.read(&self.loss_log, count)
    }

    /// How many examples of each of the last `count` batches were classified correctly.
    pub fn hits(&self, count: usize) -> Result<Vec<f32>> {
        self.read(&self.hit_log, count)
    }

    pub fn params(&self) -> Result<Params<f32>> {
        Ok(self.unflatten(&self.read(&self.params, self.layout.count as usize)?))
    }

    /// Optimiser step count (for Adam's bias correction).
    pub fn steps_taken(&self) -> u32 {
        self.t
    }

    /// Changes the learning rate from the next step on (schedules).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let Some(h) = self.hyper.as_mut() else { bail!("this network was built without training kernels") };
        h.optimizer = h.optimizer.with_lr(lr)?;
        Ok(())
    }

    /// The optimiser's state: (m, v, t) with m the SGD velocity or Adam's first moment and v
    /// Adam's second moment, flat in parameter order.
    pub fn optimizer_state(&self) -> Result<(Vec<f32>, Vec<f32>, u32)> {
        let n = self.layout.count as usize;
        Ok((self.read(&self.opt_m, n)?, self.read(&self.opt_v, n)?, self.t))
    }

    pub fn set_optimizer_state(&mut self, m: &[f32], v: &[f32], t: u32) -> Result<()> {
        let n = self.layout.count as usize;
        ensure!(m.len() == n && v.len() == n, "optimizer state has {} / {} values, expected {n}", m.len(), v.len());
        self.gpu.queue.write_buffer(&self.opt_m, 0, bytemuck::cast_slice(m));
        self.gpu.queue.write_buffer(&self.opt_v, 0, bytemuck::cast_slice(v));
        self.t = t;
        Ok(())
    }

    /// Flat values in parameter order -> one vector per group (model-file order).
    pub fn split_groups(&self, flat: &[f32]) -> Params<f32> {
        self.unflatten(flat)
    }

    fn unflatten(&self, flat: &[f32]) -> Params<f32> {
        let mut p = Params::zeros(&self.cfg);
        let mut at = 0;
        for (_, v) in p.groups_mut() {
            let len = v.len();
            v.copy_from_slice(&flat[at..at + len]);
            at += len;
        }
        p
    }

    fn read(&self, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.read_at(src, 0, len)
    }

    /// Floats `at .. at + len` of `src` (len within the readback buffer's size).
    fn read_at(&self, src: &wgpu::Buffer, at: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = 4 * len as u64;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 4 * at as u64, &self.readback, 0, bytes);
        self.gpu.queue.submit([enc.finish()]);
        read_mapped(&self.gpu.device, &self.readback, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 262144 steps at w = 128 give 2^32 entries of K_j: counted in u32 they wrapped to 0 and
    /// every later offset was wrong; the count is refused instead, naming the u32 limit.
    #[test]
    fn parameter_offsets_do_not_wrap() {
        let cfg = |steps| ModelConfig {
            d: 2,
            width: 128,
            steps,
            final_time: 1.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 3,
        };
        let err = Layout::new(&cfg(262_144)).err().expect("2^32 entries of K_j").to_string();
        assert!(err.contains("u32") && err.contains("fewer steps"), "{err}");
        let l = Layout::new(&cfg(1000)).unwrap();
        assert_eq!((l.k, l.b, l.count), (384, 384 + 1000 * 128 * 128, 384 + 1000 * (128 * 128 + 128) + 3 * 128 + 3));
    }
}
