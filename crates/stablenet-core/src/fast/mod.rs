//! Fast CPU training path (f32): the loss and exact gradient of [`crate::network::loss_grad`]
//! on blocks of examples in structure-of-arrays form, with fused steps and threads.
//!
//! Design (MODEL.md sections 1-4):
//! - A block is 16 examples side by side; a state is stored `[w][16]` per block, one row of
//!   16 lanes per state component, so every operation runs over the 16 examples at once. A
//!   tile is G blocks ([`Layout::blocks_per_tile`]) walked through all steps together; per
//!   step each block takes a few fused passes (product with K_j or K_j^T from packed panels
//!   of 4 rows, then bias, activation and state update while the rows are in registers), and
//!   the step's batch reductions (dK_j, db_j) run once over the tile: as sums across lanes for
//!   w < 16, as a product with transposed operands for w >= 16.
//! - hamiltonian and leapfrog keep no states: the adjoint rebuilds them in reverse time, as
//!   the reference does with `GradMethod::Reverse` (memory independent of N; leapfrog's f32
//!   drift grows with depth, MODEL.md section 3; restarts from checkpoints would bound the
//!   drift but not the gradient error, see [`crate::network::GradMethod::default_for`]).
//!   resnet/antisym store the tile's N + 1 states.
//! - tanh is a clamped [13/6] rational approximation (max |error| 2.7e-7 to 3.6e-7 measured,
//!   see `simd::tanh`) and sigma' is taken from its value (1 - t^2).
//! - Threads: tiles are handed out in order to the workers (`std::thread::scope`), and each
//!   adds its share of the gradient straight into the result, phase by phase (classifier,
//!   steps N-1 .. 0, opening) in tile order ([`sink`]): bit-identical for any number of
//!   threads, with no per-thread or per-chunk copy of the gradient, so the memory of a step
//!   does not grow with N.
//! - Vector code: AVX-512, AVX2 + FMA or portable, picked at run time ([`Kernels`]). The
//!   variants round differently (fused multiply-add); each is deterministic.
//! - [`FastWorkspace`] holds every buffer; [`loss_grad_with`] allocates nothing once the
//!   workspace has seen the batch size and thread count (beyond the threads it starts).
//!   Beyond parameter-shaped buffers (the packed operators and the gradient) it holds one
//!   tile's states per thread and a counter per tile ([`FastWorkspace::work_bytes`]).
use crate::config::{Activation, Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::network::{LossGrad, check_batch};
use crate::params::Params;
use std::sync::atomic::{AtomicUsize, Ordering};

mod kernels;
pub(crate) mod simd;
mod sink;
mod tile;

#[cfg(test)]
mod tests;

use kernels::{pack, packed_len};
use simd::{Act, Isa, Portable, Relu, Tanh, V};
use sink::Sink;
use tile::{Ctx, Out, Scratch};

/// How the batch is cut: tiles of `blocks_per_tile` blocks of 16 examples, the unit that
/// walks the network and the unit of the gradient's sums. The result depends on the layout
/// (the order of the sums) but never on the number of threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub blocks_per_tile: usize,
}

impl Layout {
    /// The default for a configuration: tiles of about 2048 state values per array (they
    /// stay in L1/L2; the tile size hardly matters above that, measured), and at most about
    /// 8 MiB of stored states per thread for resnet/antisym.
    pub fn default_for(cfg: &ModelConfig) -> Self {
        let w = cfg.width.max(1);
        let mut blocks = (2048 / (w * V)).clamp(2, 16);
        if matches!(cfg.integrator, Integrator::Resnet | Integrator::Antisym) {
            let per_block = (cfg.steps + 1) * w * V * std::mem::size_of::<f32>();
            blocks = blocks.min((8 << 20) / per_block).max(1);
        }
        Layout::new(blocks)
    }

    pub fn new(blocks_per_tile: usize) -> Self {
        Layout { blocks_per_tile: blocks_per_tile.max(1) }
    }

    /// Examples per tile.
    pub fn tile(&self) -> usize {
        self.blocks_per_tile * V
    }
}

/// Which compiled variant of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The best the CPU supports: AVX-512, else AVX2 + FMA, else portable.
    Auto,
    /// AVX2 + FMA where the CPU has them, else portable.
    Avx2,
    /// Portable code only (SSE2 on x86_64, no fused multiply-add).
    Portable,
}

/// Every buffer of a fast gradient evaluation; keep one per model shape and reuse it.
pub struct FastWorkspace {
    cfg: ModelConfig,
    layout: Layout,
    kernels: Kernels,
    kin: Vec<f32>,
    k: Vec<f32>,
    kt: Vec<f32>,
    wc: Vec<f32>,
    wct: Vec<f32>,
    op: Vec<f32>,
    /// Phases each tile of the current call has completed (see [`sink`]).
    done: Vec<AtomicUsize>,
    scratch: Vec<Scratch>,
    result: LossGrad<f32>,
}

impl FastWorkspace {
    pub fn new(cfg: &ModelConfig) -> Result<Self> {
        Self::with_layout(cfg, Layout::default_for(cfg))
    }

    pub fn with_layout(cfg: &ModelConfig, layout: Layout) -> Result<Self> {
        cfg.validate()?;
        let (d, w, n, c) = (cfg.d, cfg.width, cfg.steps, cfg.classes);
        let layout = Layout::new(layout.blocks_per_tile);
        let kp = packed_len(w, w);
        Ok(FastWorkspace {
            cfg: cfg.clone(),
            layout,
            kernels: Kernels::Auto,
            kin: vec![0.0; packed_len(w, d)],
            k: vec![0.0; n * kp],
            kt: vec![0.0; n * kp],
            wc: vec![0.0; packed_len(c, w)],
            wct: vec![0.0; packed_len(w, c)],
            op: vec![0.0; w * w],
            done: Vec::new(),
            scratch: Vec::new(),
            result: LossGrad { loss: 0.0, correct: 0, grad: Params::zeros(cfg), stored_states: 0 },
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Restricts the kernel variant (tests, and measuring what each variant gains).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// The instruction set its steps run with on this CPU ([`Kernels::resolved`]).
    pub fn instruction_set(&self) -> &'static str {
        self.kernels.resolved()
    }

    /// The threads a call on a batch of n examples runs on, asked for `threads` (0: all the
    /// machine has): at most one per tile.
    pub fn threads_for(&self, n: usize, threads: usize) -> usize {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |t| t.get()) } else { threads };
        threads.min(n.div_ceil(self.layout.tile()))
    }

    /// Buffers for `tiles` tiles and `threads` threads (grows only).
    fn reserve(&mut self, tiles: usize, threads: usize) {
        let cfg = &self.cfg;
        self.done.resize_with(self.done.len().max(tiles), || AtomicUsize::new(0));
        while self.scratch.len() < threads {
            let g = self.layout.blocks_per_tile;
            self.scratch.push(Scratch::new(cfg.integrator, cfg.d, cfg.width, cfg.steps, cfg.classes, g));
        }
    }

    /// Bytes of the buffers that are not parameter-shaped: the per-thread tile states and the
    /// per-tile counters, as allocated so far (they depend on the batch size and threads,
    /// never on N for hamiltonian and leapfrog; resnet/antisym store N + 1 tile states).
    pub fn work_bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let scratch: usize = self.scratch.iter().map(|s| s.len() * f).sum();
        scratch + self.done.len() * std::mem::size_of::<AtomicUsize>() + self.op.len() * f
    }

    /// Bytes of the parameter-shaped buffers: the packed operators (M_j, M_j^T and the small
    /// opening and classifier ones) and the gradient.
    pub fn param_shaped_bytes(&self) -> usize {
        let packed = self.kin.len() + self.k.len() + self.kt.len() + self.wc.len() + self.wct.len();
        (packed + self.result.grad.num_values()) * std::mem::size_of::<f32>()
    }

    /// Packs this call's parameters (M_j = A_j for antisym, MODEL.md section 2).
    fn pack_params(&mut self, p: &Params<f32>) {
        let (d, w, c) = (self.cfg.d, self.cfg.width, self.cfg.classes);
        pack(&p.k_in, w, d, false, &mut self.kin);
        pack(&p.wc, c, w, false, &mut self.wc);
        pack(&p.wc, w, c, true, &mut self.wct);
        let kp = packed_len(w, w);
        for j in 0..self.cfg.steps {
            crate::integrators::resnet::operator(self.cfg.integrator, p.k_step(j), w, self.cfg.gamma, &mut self.op);
            pack(&self.op, w, w, false, &mut self.k[j * kp..(j + 1) * kp]);
            pack(&self.op, w, w, true, &mut self.kt[j * kp..(j + 1) * kp]);
        }
    }
}

/// Mean cross-entropy, its exact gradient and the hit count of a batch, as
/// [`crate::network::loss_grad`] (`x` is n x d row-major, labels 0-based), on `threads`
/// threads (0: all available). Allocates a fresh workspace; see [`loss_grad_with`].
pub fn loss_grad(
    cfg: &ModelConfig,
    p: &Params<f32>,
    x: &[f32],
    labels: &[u32],
    threads: usize,
) -> Result<LossGrad<f32>> {
    let mut ws = FastWorkspace::new(cfg)?;
    loss_grad_with(&mut ws, cfg, p, x, labels, threads).cloned()
}

/// [`loss_grad`] with a reusable workspace; the result lives in the workspace.
pub fn loss_grad_with<'w>(
    ws: &'w mut FastWorkspace,
    cfg: &ModelConfig,
    p: &Params<f32>,
    x: &[f32],
    labels: &[u32],
    threads: usize,
) -> Result<&'w LossGrad<f32>> {
    cfg.validate()?;
    if *cfg != ws.cfg {
        return Err(Error::Config("the fast workspace was made for another model configuration".into()));
    }
    p.check_shape(cfg)?;
    check_batch(cfg, x, labels)?;
    let n = labels.len();
    let tiles = n.div_ceil(ws.layout.tile());
    let threads = ws.threads_for(n, threads);
    ws.reserve(tiles, threads);
    ws.pack_params(p);
    let FastWorkspace { cfg, layout, kernels, kin, k, kt, wc, wct, done, scratch, result, .. } = ws;
    let ctx = Ctx {
        integrator: cfg.integrator,
        d: cfg.d,
        w: cfg.width,
        steps: cfg.steps,
        c: cfg.classes,
        h: cfg.h() as f32,
        g: layout.blocks_per_tile,
        x,
        labels,
        inv_n: 1.0 / n as f32,
        kin,
        k,
        kt,
        kp: packed_len(cfg.width, cfg.width),
        wc,
        wct,
        b_in: &p.b_in,
        b: &p.b,
        mu: &p.mu,
    };
    let mut loss = 0.0f64;
    let sink = Sink::new(&mut result.grad, &mut loss, &mut result.correct, &done[..tiles]);
    let job = Job { ctx: &ctx, sink: &sink, tiles, next: AtomicUsize::new(0), act: cfg.activation, kernels: *kernels };
    let (mine, others) = scratch.split_first_mut().expect("one scratch per thread");
    std::thread::scope(|s| {
        for sc in &mut others[..threads - 1] {
            let job = &job;
            s.spawn(move || job.work(sc));
        }
        job.work(mine);
    });
    if cfg.integrator == Integrator::Antisym {
        // dL/dK_j = (G - G^T) / 2 for G = dL/dA_j (MODEL.md section 2 notes).
        let w = cfg.width;
        for gk in result.grad.k.chunks_exact_mut(w * w) {
            antisymmetric_part(gk, w);
        }
    }
    result.loss = (loss / n as f64) as f32;
    result.stored_states = match cfg.integrator {
        Integrator::Resnet | Integrator::Antisym => cfg.steps + 1,
        _ => 0,
    };
    Ok(result)
}

/// g <- (g - g^T) / 2 in place (w x w).
fn antisymmetric_part(g: &mut [f32], w: usize) {
    for i in 0..w {
        g[i * w + i] = 0.0;
        for j in i + 1..w {
            let a = 0.5 * (g[i * w + j] - g[j * w + i]);
            g[i * w + j] = a;
            g[j * w + i] = -a;
        }
    }
}

/// What every worker thread runs: the next tile in order until none is left.
struct Job<'a> {
    ctx: &'a Ctx<'a>,
    sink: &'a Sink<'a>,
    tiles: usize,
    next: AtomicUsize,
    act: Activation,
    kernels: Kernels,
}

/// Tells the other workers when this one unwinds, so that none waits on its tile forever.
struct FailOnPanic<'a>(&'a Sink<'a>);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail();
        }
    }
}

impl Job<'_> {
    fn work(&self, sc: &mut Scratch) {
        let _guard = FailOnPanic(self.sink);
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= self.tiles {
                break;
            }
            self.run_tile(sc, t);
        }
    }

    fn run_tile(&self, sc: &mut Scratch, t: usize) {
        let (ctx, out) = (self.ctx, Out { sink: self.sink, t });
        match self.kernels.choose() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves the CPU has the features the function is compiled for.
            Chosen::Avx512(isa) => unsafe {
                match self.act {
                    Activation::Tanh => tile_avx512::<Tanh>(isa, ctx, sc, out),
                    Activation::Relu => tile_avx512::<Relu>(isa, ctx, sc, out),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Chosen::Avx2(isa) => unsafe {
                match self.act {
                    Activation::Tanh => tile_avx2::<Tanh>(isa, ctx, sc, out),
                    Activation::Relu => tile_avx2::<Relu>(isa, ctx, sc, out),
                }
            },
            Chosen::Portable => match self.act {
                Activation::Tanh => one_tile::<Portable, Tanh>(Portable, ctx, sc, out),
                Activation::Relu => one_tile::<Portable, Relu>(Portable, ctx, sc, out),
            },
        }
    }
}

/// The instruction set a choice of [`Kernels`] runs with on this CPU, with the token that
/// proves the CPU has it.
enum Chosen {
    #[cfg(target_arch = "x86_64")]
    Avx512(simd::Avx512),
    #[cfg(target_arch = "x86_64")]
    Avx2(simd::Avx2),
    Portable,
}

impl Kernels {
    fn choose(self) -> Chosen {
        #[cfg(target_arch = "x86_64")]
        {
            if self == Kernels::Auto
                && let Some(isa) = simd::Avx512::new()
            {
                return Chosen::Avx512(isa);
            }
            if self != Kernels::Portable
                && let Some(isa) = simd::Avx2::new()
            {
                return Chosen::Avx2(isa);
            }
        }
        Chosen::Portable
    }

    /// The instruction set this choice runs with on this CPU: "avx512", "avx2" or "portable"
    /// (a choice the CPU lacks falls back, as documented on each variant).
    pub fn resolved(self) -> &'static str {
        match self.choose() {
            #[cfg(target_arch = "x86_64")]
            Chosen::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Chosen::Avx2(_) => "avx2",
            Chosen::Portable => "portable",
        }
    }
}

/// The tile's kernels compiled for AVX-512 (a block row of 16 examples is one register);
/// everything below is inlined into it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
fn tile_avx512<S: Act>(isa: simd::Avx512, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    one_tile::<_, S>(isa, ctx, sc, out)
}

/// The tile's kernels compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2<S: Act>(isa: simd::Avx2, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    one_tile::<_, S>(isa, ctx, sc, out)
}

/// Tile `out.t` of the batch: loaded, then through the network and back.
#[inline(always)]
fn one_tile<X: Isa, S: Act>(isa: X, ctx: &Ctx, sc: &mut Scratch, out: Out) {
    sc.load(ctx, out.t * ctx.g * V);
    tile::run::<X, S>(isa, ctx, sc, out);
}
