//! Which kernels step the integrator, and their block sizes for a model, a batch capacity and
//! an adapter's limits: the choice [`GpuNet::with_kernels`](crate::GpuNet::with_kernels) makes.
use crate::device::binding_limit;
use crate::shaders;
use anyhow::{Result, ensure};
use stablenet_core::{Integrator, ModelConfig};

/// Workgroup size of the per-example kernels (common.wgsl WG).
pub(crate) const WG: u32 = 64;
/// Loop iterations the block sizes allow one invocation in a dispatch; lavapipe silently stops
/// an invocation's loops after 65535 iterations, all its loops counted together (DEVELOPERS.md;
/// seen at w = 127 and 128 below), so stay well below.
pub(crate) const LOOP_BUDGET: u32 = 16384;
/// What a software adapter may run at most: lavapipe's 65535, less a margin for the loops
/// around the counted ones.
const LOOP_LIMIT: u32 = 60000;
/// Most adjoint steps per dispatch (network.wgsl ADJ_BLOCK, tiles.wgsl TBLOCK): each
/// has a slot of partial sums, so this bounds their memory; 32 makes the two dispatches of a
/// block cheap beside its steps.
const MAX_ADJ_BLOCK: u32 = 32;
/// Floats of partial sums the tiled adjoint may keep for a block of steps (64 MiB); at least
/// one step's are kept whatever their size.
const TILED_PARTIALS: u64 = 16 << 20;
/// Loop iterations of one invocation as lavapipe counts them: every iteration of every loop,
/// and each loop's exit test. What follows counts the kernels' loops from their sources (an
/// upper bound over the integrators where they share a kernel).
///
/// A forward dispatch of the per-example and fused kernels (network.wgsl steps_forward):
/// `spd` steps in rounds of `sub` (fused: ADJ_BLOCK, each round loading K_j, b_j into
/// workgroup memory in cache_steps; else one round). A step is at most two matrix-vector
/// products, 2 (w + 1)^2 (leapfrog and Verlet; resnet's (w + 1)(w + 3) is less), and
/// Verlet's load_example and store_example loop over the width once each.
pub(crate) fn forward_loops(w: u32, spd: u32, sub: u32, fused: bool) -> u64 {
    let (w, spd, sub) = (w as u64, spd as u64, sub.max(1) as u64);
    let rounds = spd.div_ceil(sub);
    let cache = if fused { (sub * w * w).div_ceil(WG as u64) + 1 + (sub * w).div_ceil(WG as u64) + 1 } else { 0 };
    // load and store; the round loop; per round its loads and the step loop's exit; per
    // step the step loop's iteration and the step.
    2 * (w + 1) + rounds + 1 + rounds * (cache + 1) + spd * (1 + 2 * (w + 1) * (w + 1))
}

/// A fused adjoint dispatch (network.wgsl step_adjoint with FUSE): `block` steps, each the
/// adjoint of one example (at most four matrix-vector products, Verlet's, 4 (w + 1)^2) and
/// tile_partials (the workgroup's outputs, WG examples each), after cache_steps.
pub(crate) fn fused_adjoint_loops(w: u32, block: u32) -> u64 {
    let (w, block, wg) = (w as u64, block as u64, WG as u64);
    // The output loop: per output its own iteration, WG examples and the examples' exit.
    let sums = (w * w + w).div_ceil(wg) * (wg + 2) + 1;
    let cache = (block * w * w).div_ceil(wg) + 1 + (block * w).div_ceil(wg) + 1;
    2 * (w + 1) + cache + 1 + block * (1 + 4 * (w + 1) * (w + 1) + sums)
}

/// One adjoint step of a tile in tiles.wgsl, the most over the integrators (Verlet's): four
/// products of WP / 4 rounds, two rounds of partial sums (`blocks` gradient blocks of rq
/// examples each, up to DB rows of DB stores; split: a piece of quads two at a time, then
/// the pieces and one store), two of bias sums (rq examples or a piece of them, then the
/// pieces; 4 stores), and the step loop's iteration.
pub(crate) fn tiled_adjoint_step(wp: u32, rq: u32, db: u32, blocks: u32) -> u64 {
    let beside = step_beside_partials(wp, rq);
    let (split, _) = shaders::sum_pieces(wp as usize, rq as usize, db as usize);
    let (rq, db, blocks, split) = (rq as u64, db as u64, blocks as u64, split as u64);
    let partials = if split > 1 {
        2 * (rq.div_ceil(split).div_ceil(2) + 1 + split + 1 + 2)
    } else {
        // Per gradient block: the block loop's iteration, rq examples and their exit, DB rows
        // of DB stores and each row's exit.
        2 * (blocks * (1 + rq + 1 + db * (db + 1)) + 1)
    };
    beside + partials
}

/// One adjoint step of verlet_tiled8.wgsl tile_adjoint8 (`ablock` 8): as [`tiled_adjoint_step`]
/// with two rounds of partials8 (`blocks` 8 x 8 blocks of dK_j, rq examples each, stores
/// without loops).
pub(crate) fn tiled_adjoint8_step(wp: u32, rq: u32, blocks: u32) -> u64 {
    step_beside_partials(wp, rq) + 2 * (blocks as u64 * (1 + rq as u64 + 1) + 1)
}

/// What both adjoint kernels loop over in a step beside their partial sums: four products of
/// WP / 4 rounds, two of bias sums (rq examples or a piece of them, then the pieces; 4
/// stores), and the step loop's iteration.
fn step_beside_partials(wp: u32, rq: u32) -> u64 {
    // BP does not depend on the gradient block.
    let (_, bp) = shaders::sum_pieces(wp as usize, rq as usize, 4);
    let (wp, rq, bp) = (wp as u64, rq as u64, bp as u64);
    let products = 4 * (wp / 4 + 1);
    let bias = if bp > 1 { 2 * (rq.div_ceil(bp) + 1 + bp + 1 + 5) } else { 2 * (rq + 1 + 5) };
    products + bias + 1
}

/// One tiled adjoint step of either kernel (`ablock` 4: tile_adjoint with DB = `db`; 8:
/// tile_adjoint8, a quarter of the invocations), its gradient blocks spread over them.
pub(crate) fn tiled_step_loops(wp: u32, rq: u32, db: u32, ablock: u32) -> u64 {
    let cq = wp / 4;
    if ablock == 8 {
        tiled_adjoint8_step(wp, rq, (wp / 8).pow(2).div_ceil(cq * rq / 4))
    } else {
        tiled_adjoint_step(wp, rq, db, (wp / db).pow(2).div_ceil(cq * rq))
    }
}

/// A tiled adjoint invocation: `tpw` tiles of `block` steps each (the tile loop's iteration
/// and the step loop's exit per tile; the tile loop's exit).
pub(crate) fn tiled_adjoint_loops(step: u64, tpw: u32, block: u32) -> u64 {
    tpw as u64 * (block as u64 * step + 2) + 1
}

/// A tiled forward invocation (tiles.wgsl tile_forward): `spd` steps of at most two products.
/// verlet_tiled.wgsl tile_forward8 (`fblock` 8) also loads and stores the tile's two states
/// (4 rq examples by wp components over wp rq / 16 invocations: 64 rounds each way); its
/// products loop wp / 4 + 1 times too.
pub(crate) fn tiled_forward_loops(wp: u32, spd: u32, fblock: u32) -> u64 {
    let moves = if fblock == 8 { 2 * (64 + 1) } else { 0 };
    spd as u64 * (2 * (wp as u64 / 4 + 1) + 1) + 1 + moves
}

/// network.wgsl open_forward (open_adjoint runs fewer): the input's d values, then each block
/// of eight outputs sums them.
pub(crate) fn opening_loops(w: u32, d: u32) -> u64 {
    (w.div_ceil(8) as u64 + 1) * (d as u64 + 2)
}

/// network.wgsl classify: the logits in blocks of eight (w terms each), two passes over the c
/// logits, then ybar in blocks of eight (c terms each).
pub(crate) fn classify_loops(w: u32, c: u32) -> u64 {
    let (bw, bc, w, c) = (w.div_ceil(8) as u64, c.div_ceil(8) as u64, w as u64, c as u64);
    (bc + 1) + bc * (w + 1) + 2 * (c + 1) + (bw + 1) + bw * (c + 1)
}

/// reduce.wgsl TLANES for `partials` partials per output: 4, 8, 16 or 32 invocations, the
/// fewest that leave each at most 64 of them (or 32).
pub(crate) fn reduce_lanes(partials: u64) -> u32 {
    [4, 8, 16].into_iter().find(|&l| partials.div_ceil(l as u64) <= 64).unwrap_or(32)
}

/// The largest n in 1..=max for which `fits` holds (0 if none), `fits` true up to some n.
fn largest(max: u32, fits: impl Fn(u32) -> bool) -> u32 {
    let (mut lo, mut hi) = (0, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// How the tiled steps are sized. The sizes are reasoned and the checks measured (H100 run 7,
/// 2026-11-27: of the settings `benches/device/run.sh` tries, only dropping the loop counters
/// made mid and wide faster); the benchmark can set others (`STABLENET_GPU_TILED`), to time
/// them side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TiledTuning {
    /// Most invocations per workgroup (4 x 4 blocks each): 256.
    pub invocations: u32,
    /// About how many workgroups the adjoint launches; each takes as many consecutive tiles as
    /// that needs and keeps one partial for them all. 256: two per SM of a large GPU (an H100
    /// has 132), so that the partials stay few (17 MB a step at the wide workload, not 67).
    /// Also the tiles a narrow Verlet batch must fill to be tiled rather than fused.
    pub groups: u32,
    /// The edge of each invocation's blocks of dK_j (4, 2 or 1); None: the largest that gives
    /// every invocation a block (`shaders::gradient_block`).
    pub gradient_block: Option<u32>,
    /// wgpu's runtime checks in the tiled module: the bounds clamps without the loop counters
    /// by default.
    pub checks: RuntimeChecks,
    /// The edge of each invocation's blocks in the Verlet forward: 4 (tile_forward, the
    /// default), or 8 (tile_forward8; slower on the H100 at mid and wide, run 10 of 2026-11-28; where the tile's
    /// quads or the width's component quads are odd, 4; it rounds the tile's quads down to even).
    pub forward_block: u32,
    /// The same for the Verlet adjoint: 4 (tile_adjoint), or 8 (tile_adjoint8, slower on the
    /// H100 too; it needs w % 4 = 0, an even number of component quads and 4 or more example
    /// quads per tile, and falls back to 4 without them).
    pub adjoint_block: u32,
    /// Tiled Verlet: the forward keeps both pre-activations of every step (K_j^T y_j + b_j and
    /// K_j z_{j+1} + b_j, 2 N states in all) and the adjoint reads them back, where by default
    /// it computes them again from the states it rebuilds. That is one matrix product in four
    /// fewer per step (PyTorch's count: 6 a step, not 8), for memory that grows with depth as
    /// PyTorch's does. Off by default (memory flat in depth). On the H100 (run 10) wide was
    /// slower with it, its forward writing one float at a time; since 884be7a the kept values
    /// move as vec4 rows (not yet timed).
    pub keep: bool,
}

/// Which of wgpu's runtime checks the tiled module is built with. Its indices stay in bounds
/// by construction (the bindings' lengths come from the same `Plan`) and its loops have
/// constant or uniform bounds, so both may go; `xtask validate` runs it without them. On the
/// H100 (runs 7 and 8) dropping the loop counters saved 5-6% of a step at wide and 14-15% at
/// mid; dropping the clamps as well saved 1-3% more at mid and nothing measurable at wide, so
/// the default keeps the clamps, which keep a wrong index inside its binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeChecks {
    /// A clamp on every indexed access, and a counter in every loop, whose extra exit may keep
    /// the driver from unrolling it (`wgpu::Device::create_shader_module`).
    All,
    /// The clamps, without the loop counters (`create_shader_module_trusted`).
    Bounds,
    /// Neither.
    None,
}

impl RuntimeChecks {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeChecks::All => "all",
            RuntimeChecks::Bounds => "bounds",
            RuntimeChecks::None => "none",
        }
    }

    /// What `create_shader_module_trusted` is given.
    pub(crate) fn wgpu(self) -> wgpu::ShaderRuntimeChecks {
        match self {
            RuntimeChecks::All => wgpu::ShaderRuntimeChecks::checked(),
            RuntimeChecks::Bounds => {
                wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() }
            }
            RuntimeChecks::None => wgpu::ShaderRuntimeChecks::unchecked(),
        }
    }
}

impl Default for TiledTuning {
    fn default() -> Self {
        TiledTuning {
            invocations: 256,
            groups: 256,
            gradient_block: None,
            checks: RuntimeChecks::Bounds,
            forward_block: 4,
            adjoint_block: 4,
            keep: false,
        }
    }
}

impl TiledTuning {
    /// `invocations=N,groups=N,db=N,checks=all|bounds|none,fblock=4|8,ablock=4|8,keep=0|1`, any
    /// of them (unnamed ones keep their defaults).
    pub fn parse(s: &str) -> Result<Self> {
        TiledTuning::default().with(s)
    }

    /// [`TiledTuning::parse`] starting from `self` instead of the defaults.
    pub fn with(self, s: &str) -> Result<Self> {
        let mut t = self;
        let expected = "expected invocations=1..1024, groups>=1, db=1|2|4, checks=all|bounds|none, fblock=4|8, ablock=4|8 \
             or keep=0|1";
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            if key == "checks" {
                t.checks = [RuntimeChecks::All, RuntimeChecks::Bounds, RuntimeChecks::None]
                    .into_iter()
                    .find(|c| c.name() == value)
                    .ok_or_else(|| anyhow::anyhow!("tiled tuning `{part}`: {expected}"))?;
                continue;
            }
            let v: u32 = value.parse().map_err(|_| anyhow::anyhow!("tiled tuning `{part}`: {expected}"))?;
            match key {
                "invocations" if (1..=1024).contains(&v) => t.invocations = v,
                "groups" if v >= 1 => t.groups = v,
                "db" if matches!(v, 1 | 2 | 4) => t.gradient_block = Some(v),
                "fblock" if matches!(v, 4 | 8) => t.forward_block = v,
                "ablock" if matches!(v, 4 | 8) => t.adjoint_block = v,
                "keep" if v <= 1 => t.keep = v == 1,
                _ => anyhow::bail!("tiled tuning `{part}`: {expected}"),
            }
        }
        Ok(t)
    }
}

/// How the integrator's steps run on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKernels {
    /// One example per invocation (network.wgsl with the integrator's file), one adjoint step
    /// per dispatch and two reduction passes after it: every integrator, every width.
    PerExample,
    /// Narrow nets (w^2 + w <= 128), the default there but for large Verlet batches: one
    /// example per invocation with its vectors in registers; blocks of adjoint steps per
    /// dispatch, each step's first reduction pass summed in workgroup memory (network.wgsl
    /// tile_partials). The latency of dependent dispatches and loads bounds a narrow step.
    Fused,
    /// The default when not narrow, every integrator, and for narrow Verlet nets whose batch
    /// fills `TiledTuning::groups` tiles: a workgroup steps a tile of examples as matrix
    /// products (tiles.wgsl), blocks of adjoint steps per dispatch with each workgroup's
    /// partial gradient sums.
    Tiled,
}

impl StepKernels {
    pub fn name(self) -> &'static str {
        match self {
            StepKernels::PerExample => "per-example",
            StepKernels::Fused => "fused",
            StepKernels::Tiled => "tiled",
        }
    }

    /// `per-example`, `fused`, `tiled`, or `auto` (None: the engine's choice).
    pub fn parse(s: &str) -> Result<Option<Self>> {
        Ok(match s {
            "auto" => None,
            "per-example" => Some(StepKernels::PerExample),
            "fused" => Some(StepKernels::Fused),
            "tiled" => Some(StepKernels::Tiled),
            _ => anyhow::bail!("step kernels `{s}`: expected auto, per-example, fused or tiled"),
        })
    }
}

/// Which kernels step the integrator (None: the engine's choice) and how the tiled ones are
/// sized ([`GpuNet::with_options`](crate::GpuNet::with_options)).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOptions {
    pub kernels: Option<StepKernels>,
    pub tiled: TiledTuning,
}

/// The step kernels chosen and their sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Plan {
    pub kernels: StepKernels,
    /// Adjoint steps per dispatch (1 for PerExample).
    pub block: u32,
    /// Forward steps per dispatch.
    pub spd: u32,
    /// Tiled: example quads per tile (tiles.wgsl RQ); 0 otherwise.
    pub rq: u32,
    /// Tiled: tiles per adjoint workgroup (tiles.wgsl TPW); 0 otherwise.
    pub tpw: u32,
    /// Tiled: the edge of the gradient blocks (tiles.wgsl DB); 0 otherwise.
    pub db: u32,
    /// Examples per partial sum of the adjoint (0 for PerExample: its reductions chunk them).
    pub per_partial: u32,
    /// Tiled: invocations per output of reduce_tiles (reduce.wgsl TLANES); 4 otherwise.
    pub reduce_lanes: u32,
    /// Floats of the adjoint's partial sums (0 for PerExample).
    pub partials: u64,
    /// Fused: floats of the workgroup arrays tf and kc (network.wgsl).
    pub tf_len: usize,
    pub kc_len: usize,
    /// Tiled Verlet: the forward's block edge, 4 or 8 (TiledTuning::forward_block); 4 otherwise.
    pub fblock: u32,
    /// Tiled Verlet: the adjoint's block edge, 4 or 8 (TiledTuning::adjoint_block); 4 otherwise.
    pub ablock: u32,
    /// Tiled Verlet: the forward keeps the pre-activations for the adjoint (TiledTuning::keep).
    pub keep: bool,
}

impl Plan {
    /// `choice` None takes the default of [`StepKernels`]; a forced choice that the model or
    /// adapter cannot run fails with the reason. `software`: the adapter computes on the CPU
    /// (lavapipe, with its loop limit).
    pub fn new(
        cfg: &ModelConfig,
        nmax: u32,
        lim: &wgpu::Limits,
        software: bool,
        choice: Option<StepKernels>,
        tuning: TiledTuning,
    ) -> Result<Plan> {
        let w = cfg.width as u32;
        let outs = (w * w + w) as u64;
        let shared = lim.max_compute_workgroup_storage_size;
        // Fused: workgroup memory for the factors of WG examples and K_j, b_j of a block of
        // steps (tf, kc; 64 floats more for the rest); the block's loops within the budget.
        let narrow = w * w + w <= 2 * WG;
        let floats = |block: u32| {
            let (tf, kc) = shaders::fused_arrays(w as usize, WG as usize, block as usize);
            (tf + kc + 64) as u32
        };
        let fit = (shared / 4).saturating_sub(floats(0)) / (w * w + w);
        let by_loops = largest(MAX_ADJ_BLOCK, |b| fused_adjoint_loops(w, b) <= LOOP_BUDGET as u64);
        let fused_block = by_loops.min(fit);
        // Tiled: two tiles of WP x 4 rq floats, the pieces of the split gradient sums and the
        // cursor (shaders::tiled_workgroup_bytes), TWG = WP / 4 * rq invocations.
        let wp = shaders::padded(cfg.width) as u32;
        let cq = wp / 4;
        let adapter_invocations = lim.max_compute_invocations_per_workgroup.min(lim.max_compute_workgroup_size_x);
        let invocations = tuning.invocations.min(adapter_invocations);
        let db_at = |rq: u32| tuning.gradient_block.unwrap_or(shaders::gradient_block(cfg.width, rq as usize) as u32);
        let tile_bytes = |rq: u32| shaders::tiled_workgroup_bytes(wp as usize, rq as usize, db_at(rq) as usize) as u32;
        // The bytes grow with rq (a smaller gradient block only adds pieces), as `largest` needs.
        let rq = largest((invocations / cq).min(64), |rq| tile_bytes(rq) <= shared);
        let hamiltonian = cfg.integrator == Integrator::Hamiltonian;
        // 8 x 8 blocks (verlet_tiled8.wgsl) take two example quads each: an even rq, where they
        // are asked for and can run (the adjoint's also need w % 4 = 0).
        let adjoint8 = tuning.adjoint_block == 8 && w.is_multiple_of(4);
        let eights = hamiltonian && (tuning.forward_block == 8 || adjoint8) && cq.is_multiple_of(2);
        let rq = if eights && rq > 2 { rq & !1 } else { rq };
        let ops_bytes = 4 * shaders::tiled_operators(cfg.steps, cfg.width);
        let binding = binding_limit(lim);
        // Large batches of a narrow Verlet net go to the tiles: H100 run 7 (2026-11-27) timed
        // peaks-small (256 tiles of 256 examples) tiled at 2.31 and 2.44 ms against 2.92 and
        // 3.03 fused in the same runs, and deep-256 (64 tiles) at 7.4 against 3.3. Fused time is
        // latency until the GPU fills, then linear in n; tiled stays near its latency up to
        // about two tiles per SM, so the tiles win once there are `groups` of them (two per SM
        // of a large GPU). Leapfrog and resnet are not timed so: they keep the fused blocks.
        let tiles_fill = rq >= 1 && nmax.div_ceil(4 * rq) >= tuning.groups;
        let big_batch = tiles_fill && hamiltonian;
        let kernels = match choice {
            None if narrow && fused_block >= 1 && !big_batch => StepKernels::Fused,
            None if rq >= 1 && ops_bytes <= binding => StepKernels::Tiled,
            None => StepKernels::PerExample,
            Some(StepKernels::Fused) => {
                ensure!(narrow, "the fused adjoint reduction needs w^2 + w <= {}, the model has w = {w}", 2 * WG);
                ensure!(
                    fused_block >= 1,
                    "the fused adjoint needs {} bytes of workgroup memory; this adapter allows {shared} \
                     (max_compute_workgroup_storage_size)",
                    4 * floats(1)
                );
                StepKernels::Fused
            }
            Some(StepKernels::Tiled) => {
                ensure!(
                    ops_bytes <= binding,
                    "tiled steps at w = {w}, N = {} read {ops_bytes} bytes of padded K_j, K_j^T, b_j in one \
                     binding; this adapter allows {binding} (max_storage_buffer_binding_size / max_buffer_size): \
                     fewer steps, or the per-example kernels",
                    cfg.steps
                );
                ensure!(
                    rq >= 1,
                    "tiled steps at w = {w} need {} bytes of workgroup memory and {cq} invocations per \
                     workgroup; this adapter allows {shared} and {} (max_compute_workgroup_storage_size, \
                     max_compute_invocations_per_workgroup)",
                    tile_bytes(1),
                    adapter_invocations
                );
                StepKernels::Tiled
            }
            Some(k) => k,
        };
        // The per-example Verlet adjoint is one step per dispatch, four matrix-vector products
        // and the loads and stores around them: (w + 1)(4 w + 6) loop iterations as lavapipe
        // counts them (each loop's exit test too). At w = 127 and 128 that passed its limit,
        // and it returned wrong gradients.
        let adjoint_loops = (w + 1) * (4 * w + 6);
        ensure!(
            !(software && hamiltonian && kernels == StepKernels::PerExample && adjoint_loops > LOOP_LIMIT),
            "the per-example hamiltonian adjoint at w = {w} runs {adjoint_loops} loop iterations per invocation, \
             more than this software adapter runs (lavapipe stops at 65535); use the tiled steps"
        );
        // The opening and the classifier run one example per invocation whatever the step
        // kernels; past the limit lavapipe returned a wrong y_0 and wrong gradients.
        let (d, c) = (cfg.d as u32, cfg.classes as u32);
        let opening = opening_loops(w, d);
        ensure!(
            !software || opening <= LOOP_LIMIT as u64,
            "the opening layer at w = {w}, d = {d} runs {opening} loop iterations per invocation, more than \
             this software adapter runs (lavapipe stops at 65535); use a narrower net or fewer inputs"
        );
        let classifier = classify_loops(w, c);
        ensure!(
            !software || classifier <= LOOP_LIMIT as u64,
            "the classifier at w = {w}, C = {c} runs {classifier} loop iterations per invocation, more than \
             this software adapter runs (lavapipe stops at 65535); use a narrower net or fewer classes"
        );
        // Forward steps per dispatch: the most whose loops stay within the budget (the fused
        // kernels run them in rounds of their adjoint block).
        let fused = kernels == StepKernels::Fused;
        let spd = largest(LOOP_BUDGET, |s| {
            forward_loops(w, s, if fused { fused_block } else { s }, fused) <= LOOP_BUDGET as u64
        })
        .max(1);
        let plain = Plan {
            kernels,
            block: 1,
            spd,
            rq: 0,
            tpw: 0,
            db: 0,
            per_partial: 0,
            reduce_lanes: 4,
            partials: 0,
            tf_len: 0,
            kc_len: 0,
            fblock: 4,
            ablock: 4,
            keep: false,
        };
        Ok(match kernels {
            StepKernels::PerExample => plain,
            StepKernels::Fused => {
                let (tf_len, kc_len) = shaders::fused_arrays(w as usize, WG as usize, fused_block as usize);
                Plan {
                    block: fused_block,
                    per_partial: WG,
                    partials: fused_block as u64 * nmax.div_ceil(WG) as u64 * outs,
                    tf_len,
                    kc_len,
                    ..plain
                }
            }
            StepKernels::Tiled => {
                let db = db_at(rq);
                // tile_adjoint8: a quarter of the invocations, which bias_sums' CQ BP fit from
                // rq = 4 (BP = rq / 8 clamped to 1..8; rq is even there, rounded above). Every
                // tiled pipeline binds 10 storage buffers (st, acc, tpart and kept again as vec4
                // rows), within the 16 that the engine requires.
                let ablock = if adjoint8 && eights && rq >= 4 { 8 } else { 4 };
                let per_step = tiled_step_loops(wp, rq, db, ablock);
                let tiles = nmax.div_ceil(4 * rq);
                let tpw = tiles.div_ceil(tuning.groups.max(1));
                let groups = tiles.div_ceil(tpw) as u64;
                let by_memory = (TILED_PARTIALS / (groups * outs)).clamp(1, MAX_ADJ_BLOCK as u64) as u32;
                let by_loops =
                    (LOOP_BUDGET as u64).saturating_sub(tiled_adjoint_loops(0, tpw, 0)) / (tpw as u64 * per_step);
                let block = by_memory.min(by_loops as u32).max(1);
                // Tiles per workgroup grow with the batch; on a software adapter their loops
                // must stay under its limit (from about 970k examples at w = 128 on lavapipe).
                let loops = tiled_adjoint_loops(per_step, tpw, 1);
                ensure!(
                    !software || loops <= LOOP_LIMIT as u64,
                    "a batch of {nmax} examples gives each tiled adjoint workgroup {tpw} tiles, {loops} loop \
                     iterations per invocation, more than this software adapter runs (lavapipe stops at \
                     65535); use smaller batches"
                );
                // tile_forward8 lays out (rq / 2) x (cq / 2) invocations of 8 x 8 blocks.
                let fblock = if tuning.forward_block == 8 && hamiltonian && rq.is_multiple_of(2) && cq.is_multiple_of(2)
                {
                    8
                } else {
                    4
                };
                let spd = largest(64, |s| tiled_forward_loops(wp, s, fblock) <= LOOP_BUDGET as u64).max(1);
                Plan {
                    fblock,
                    ablock,
                    keep: tuning.keep && hamiltonian,
                    block,
                    spd,
                    rq,
                    tpw,
                    db,
                    per_partial: 4 * rq * tpw,
                    reduce_lanes: reduce_lanes(groups),
                    partials: block as u64 * groups * outs,
                    ..plain
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stablenet_core::Activation;

    fn model(integrator: Integrator, width: usize, steps: usize) -> ModelConfig {
        ModelConfig {
            d: 2,
            width,
            steps,
            final_time: 1.0,
            integrator,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 3,
        }
    }

    /// A large GPU's workgroup limits (48 KiB, 1024 invocations).
    fn large_gpu() -> wgpu::Limits {
        wgpu::Limits {
            max_compute_workgroup_storage_size: 49152,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            ..wgpu::Limits::default()
        }
    }

    /// wgpu's defaults (16 KiB of workgroup memory, 128 MiB bindings), like a small adapter.
    fn plan(cfg: &ModelConfig, nmax: u32, software: bool, choice: Option<StepKernels>) -> Result<Plan> {
        Plan::new(cfg, nmax, &wgpu::Limits::default(), software, choice, TiledTuning::default())
    }

    #[test]
    fn defaults_by_width_and_integrator() {
        let kernels = |i, w| plan(&model(i, w, 8), 1024, false, None).unwrap().kernels;
        assert_eq!(kernels(Integrator::Hamiltonian, 8), StepKernels::Fused);
        assert_eq!(kernels(Integrator::Hamiltonian, 32), StepKernels::Tiled);
        assert_eq!(kernels(Integrator::Leapfrog, 128), StepKernels::Tiled);
        assert_eq!(kernels(Integrator::Antisym, 32), StepKernels::Tiled);
        assert_eq!(kernels(Integrator::Resnet, 10), StepKernels::Fused);
    }

    /// Narrow Verlet nets take the tiles once the batch fills `groups` of them (peaks-small's
    /// 65536 examples: 256 tiles of 256 on a 48 KiB adapter), the fused blocks below that
    /// (deep-256's 16384) and for the integrators not timed so.
    #[test]
    fn large_narrow_verlet_batches_take_the_tiles() {
        let big = large_gpu();
        let kernels = |i, n, t: TiledTuning| Plan::new(&model(i, 8, 64), n, &big, false, None, t).unwrap().kernels;
        let default = TiledTuning::default();
        assert_eq!(kernels(Integrator::Hamiltonian, 65536, default), StepKernels::Tiled);
        assert_eq!(kernels(Integrator::Hamiltonian, 65535 - 255, default), StepKernels::Fused);
        assert_eq!(kernels(Integrator::Hamiltonian, 16384, default), StepKernels::Fused);
        assert_eq!(kernels(Integrator::Leapfrog, 65536, default), StepKernels::Fused);
        assert_eq!(kernels(Integrator::Resnet, 1 << 20, default), StepKernels::Fused);
        let fewer = TiledTuning { groups: 64, ..default };
        assert_eq!(kernels(Integrator::Hamiltonian, 16384, fewer), StepKernels::Tiled);
    }

    /// Where the padded K_j of the tiled steps do not fit one binding, the default falls back
    /// and forcing them names the limit and what helps.
    #[test]
    fn tiled_steps_need_their_operators_to_fit() {
        let deep = model(Integrator::Leapfrog, 128, 4096); // 539 MB of padded K_j, K_j^T
        assert_eq!(plan(&deep, 64, false, None).unwrap().kernels, StepKernels::PerExample);
        let err = plan(&deep, 64, false, Some(StepKernels::Tiled)).unwrap_err().to_string();
        assert!(err.contains("max_storage_buffer_binding_size") && err.contains("fewer steps"), "{err}");
    }

    /// lavapipe's loop limit: the per-example Verlet adjoint is refused on software adapters
    /// from w = 122 (it returned wrong gradients at 127), and so are batches that would give
    /// a tiled workgroup too many tiles; hardware adapters run both.
    #[test]
    fn software_adapters_keep_under_the_loop_limit() {
        let per_example = Some(StepKernels::PerExample);
        let ham = |w| model(Integrator::Hamiltonian, w, 4);
        assert!(plan(&ham(121), 64, true, per_example).is_ok());
        let err = plan(&ham(122), 64, true, per_example).unwrap_err().to_string();
        assert!(err.contains("software adapter"), "{err}");
        assert!(plan(&ham(128), 64, false, per_example).is_ok());
        let huge = 1 << 21;
        assert!(plan(&ham(128), huge, true, None).is_err());
        assert!(plan(&ham(128), huge, false, None).is_ok());
    }

    /// The tiled adjoint's partials: one per workgroup of `tpw` tiles, about `groups` of
    /// them, and as many examples per partial as reduce_tiles is told (Meta.j0).
    #[test]
    fn tiled_partials_cover_the_batch() {
        for (w, nmax) in [(32, 65536), (128, 32768), (13, 100), (64, 7900)] {
            let p = plan(&model(Integrator::Hamiltonian, w, 16), nmax, false, Some(StepKernels::Tiled)).unwrap();
            let tiles = nmax.div_ceil(4 * p.rq);
            let groups = tiles.div_ceil(p.tpw);
            let target = TiledTuning::default().groups;
            assert!(groups <= target && (p.tpw == 1 || groups > target / 2), "w {w}: {p:?}");
            assert_eq!(nmax.div_ceil(p.per_partial), groups, "w {w}");
            let outs = (w * w + w) as u64;
            assert_eq!(p.partials, p.block as u64 * groups as u64 * outs, "w {w}");
            assert!(p.block >= 1 && p.block <= MAX_ADJ_BLOCK);
        }
    }

    /// Every dispatch's loops, as lavapipe counts them (each loop's exit test too), stay within
    /// the budget: forward steps per dispatch (at w = 1 they once ran 8192 steps, ~74k
    /// iterations counted so; they only fitted because the driver unrolled the w = 1 loops),
    /// the fused adjoint blocks, and the tiled blocks of every batch size. On a GPU's limits
    /// and on wgpu's defaults (small workgroup memory: other blocks and tiles).
    #[test]
    fn every_dispatch_stays_within_the_loop_budget() {
        let big = large_gpu();
        let budget = LOOP_BUDGET as u64;
        let eights = TiledTuning { forward_block: 8, adjoint_block: 8, ..TiledTuning::default() };
        let runs = [
            (wgpu::Limits::default(), Integrator::Leapfrog, TiledTuning::default()),
            (big.clone(), Integrator::Leapfrog, TiledTuning::default()),
            (big, Integrator::Hamiltonian, eights),
        ];
        for (lim, integrator, tuning) in runs {
            for w in (1..=16).chain([31, 32, 33, 64, 100, 127, 128]) {
                let wp = shaders::padded(w as usize) as u32;
                let cfg = model(integrator, w as usize, 1000);
                let plan = |nmax, k| Plan::new(&cfg, nmax, &lim, false, Some(k), tuning);
                // From w = 90 one step is past the budget (still under the limit at w = 128).
                let p = plan(1000, StepKernels::PerExample).unwrap();
                let loops = forward_loops(w, p.spd, p.spd, false);
                assert!(loops <= budget || (p.spd == 1 && loops <= LOOP_LIMIT as u64), "w {w} per example: {p:?}");
                if let Ok(p) = plan(1000, StepKernels::Fused) {
                    assert!(forward_loops(w, p.spd, p.block, true) <= budget, "w {w} fused: {p:?}");
                    assert!(fused_adjoint_loops(w, p.block) <= budget, "w {w} fused: {p:?}");
                }
                for nmax in [1, 100, 7900, 65536, 1 << 20] {
                    let p = plan(nmax, StepKernels::Tiled).unwrap();
                    let bytes = shaders::tiled_workgroup_bytes(wp as usize, p.rq as usize, p.db as usize);
                    assert!(bytes as u32 <= lim.max_compute_workgroup_storage_size, "w {w} tiled: {bytes} bytes");
                    assert!(tiled_forward_loops(wp, p.spd, p.fblock) <= budget, "w {w} tiled: {p:?}");
                    let loops = tiled_adjoint_loops(tiled_step_loops(wp, p.rq, p.db, p.ablock), p.tpw, p.block);
                    // One step per block is the least there is; beyond the budget only then.
                    assert!(loops <= budget || p.block == 1, "w {w}, n {nmax}: {loops} loops, {p:?}");
                }
            }
        }
        // The steps per forward dispatch at w = 1, 2 with the counts above.
        let spd = |w, k| plan(&model(Integrator::Resnet, w, 8), 64, false, Some(k)).unwrap().spd;
        assert!(spd(1, StepKernels::PerExample) >= 1000 && spd(1, StepKernels::PerExample) < 8192);
        assert!(spd(2, StepKernels::Fused) >= 500);
    }

    /// The tiled adjoint step counted by hand from tiles.wgsl at w = 128 with 2 example quads
    /// and 1 x 1 gradient blocks (256 per invocation): four products of 32 rounds and their
    /// exits (132); per round of partials 256 x (the block loop's iteration, 2 examples and
    /// their exit, one row of one store and its exit) and the exit (1537, twice); per round of
    /// bias sums 2 examples, their exit and 5 for the stores (16); the step (1). The formula
    /// once left out the block loop's iterations, 19% short here: with invocations=64, db=1 a
    /// software adapter accepted batches that ran past lavapipe's limit.
    #[test]
    fn tiled_adjoint_step_counts_every_loop() {
        assert_eq!(tiled_adjoint_step(128, 2, 1, 256), 132 + 2 * 1537 + 16 + 1);
        // w = 8 with 64 example quads: split_partials' 2 pieces (16 rounds of two quads and
        // the exit, 2 pieces and the exit, one store and the exit: 22, twice) and bias_sums' 8
        // (8 quads and the exit, 8 pieces and the exit, 5 for the stores: 23, twice).
        assert_eq!(shaders::sum_pieces(8, 64, 1), (2, 8));
        assert_eq!(tiled_adjoint_step(8, 64, 1, 1), 4 * 3 + 2 * 22 + 2 * 23 + 1);
        let tuned = TiledTuning { invocations: 64, gradient_block: Some(1), ..TiledTuning::default() };
        let wide = model(Integrator::Hamiltonian, 128, 4);
        let p = |n| Plan::new(&wide, n, &wgpu::Limits::default(), true, Some(StepKernels::Tiled), tuned);
        assert!(p(45_000).is_err(), "past lavapipe's limit with the full count");
        assert!(p(20_000).is_ok());
    }

    /// reduce_tiles keeps 4 lanes up to the default's 256 partials per output, then more.
    #[test]
    fn reduce_lanes_grow_with_the_partials() {
        assert_eq!([1, 256, 257, 512, 1024, 1025, 4096].map(reduce_lanes), [4, 4, 8, 8, 16, 32, 32]);
        let wide = model(Integrator::Hamiltonian, 128, 32);
        let plan = |groups| {
            let t = TiledTuning { groups, ..TiledTuning::default() };
            Plan::new(&wide, 32768, &large_gpu(), false, None, t).unwrap().reduce_lanes
        };
        assert_eq!((plan(256), plan(1024)), (4, 16));
    }

    /// tile_adjoint8 where asked and possible, else tile_adjoint; its loops counted by hand at
    /// the wide workload's tiles (w = 128, 8 example quads, 64 invocations): four products of
    /// 32 rounds and the exit, two rounds of partials8 (4 blocks of 8 quads, each with its
    /// iteration and the quads' exit, and the block loop's exit: 41), two of bias sums (8 quads,
    /// the exit, 5 for the stores: 14) and the step loop's iteration.
    #[test]
    fn eight_by_eight_adjoint_blocks_where_they_fit() {
        assert_eq!(tiled_adjoint8_step(128, 8, 4), 4 * 33 + 2 * 41 + 2 * 14 + 1);
        let big = large_gpu();
        let eights = TiledTuning { forward_block: 8, adjoint_block: 8, ..TiledTuning::default() };
        let plan =
            |i, w, lim: &wgpu::Limits, t| Plan::new(&model(i, w, 4), 32768, lim, false, Some(StepKernels::Tiled), t);
        let p = plan(Integrator::Hamiltonian, 128, &big, eights).unwrap();
        assert_eq!((p.fblock, p.ablock, p.rq), (8, 8, 8));
        // Not asked for; another integrator; w % 4 != 0; odd component quads.
        assert_eq!(plan(Integrator::Hamiltonian, 128, &big, TiledTuning::default()).unwrap().ablock, 4);
        assert_eq!(plan(Integrator::Leapfrog, 128, &big, eights).unwrap().ablock, 4);
        assert_eq!(plan(Integrator::Hamiltonian, 126, &big, eights).unwrap().ablock, 4);
        assert_eq!(plan(Integrator::Hamiltonian, 12, &big, eights).unwrap().ablock, 4);
        // 28 examples a tile at 32 KiB (lavapipe): rounded down to 24, an even 6 quads; not
        // where the 8 x 8 adjoint cannot run (w = 126).
        let small = wgpu::Limits { max_compute_workgroup_storage_size: 32768, ..big };
        let p = plan(Integrator::Hamiltonian, 128, &small, eights).unwrap();
        assert_eq!((p.fblock, p.ablock, p.rq), (8, 8, 6));
        assert_eq!(plan(Integrator::Hamiltonian, 128, &small, TiledTuning::default()).unwrap().rq, 7);
        let adjoint_only = TiledTuning { adjoint_block: 8, ..TiledTuning::default() };
        assert_eq!(plan(Integrator::Hamiltonian, 126, &small, adjoint_only).unwrap().rq, 7);
    }

    /// Only tiled Verlet steps keep their pre-activations; the others need none or keep states.
    #[test]
    fn only_tiled_verlet_keeps_its_pre_activations() {
        let keep = TiledTuning { keep: true, ..TiledTuning::default() };
        let big = large_gpu();
        let plan = |i, w, k| Plan::new(&model(i, w, 4), 32768, &big, false, k, keep).unwrap().keep;
        assert!(plan(Integrator::Hamiltonian, 128, None));
        assert!(plan(Integrator::Hamiltonian, 8, Some(StepKernels::Tiled)));
        assert!(!plan(Integrator::Hamiltonian, 8, Some(StepKernels::Fused)));
        assert!(!plan(Integrator::Hamiltonian, 8, Some(StepKernels::PerExample)));
        assert!(!plan(Integrator::Leapfrog, 128, None));
        assert!(!plan(Integrator::Resnet, 128, None));
        let default =
            Plan::new(&model(Integrator::Hamiltonian, 128, 4), 32768, &big, false, None, TiledTuning::default());
        assert!(!default.unwrap().keep);
    }

    /// The opening and the classifier run one example per invocation: on a software adapter
    /// their loops must stay under lavapipe's limit (at w = 128, d = 600 it once returned a
    /// wrong y_0; at C = 300 wrong gradients). With eight outputs per pass they are refused from
    /// d = 3528 and C = 1750 there (d = 464 and C = 228 before); a hardware adapter runs them.
    #[test]
    fn software_adapters_refuse_wide_openings_and_classifiers() {
        let wide = |d, classes| ModelConfig { d, classes, ..model(Integrator::Hamiltonian, 128, 4) };
        assert!(plan(&wide(3527, 1749), 64, true, None).is_ok());
        let err = plan(&wide(3528, 3), 64, true, None).unwrap_err().to_string();
        assert!(err.contains("opening layer") && err.contains("software adapter"), "{err}");
        let err = plan(&wide(2, 1750), 64, true, None).unwrap_err().to_string();
        assert!(err.contains("classifier") && err.contains("fewer classes"), "{err}");
        assert!(plan(&wide(6000, 3000), 64, false, None).is_ok());
    }

    #[test]
    fn tuning_parses_and_refuses_nonsense() {
        let t = TiledTuning::parse("invocations=128, db=4").unwrap();
        assert_eq!(
            t,
            TiledTuning {
                invocations: 128,
                groups: 256,
                gradient_block: Some(4),
                checks: RuntimeChecks::Bounds,
                forward_block: 4,
                adjoint_block: 4,
                keep: false
            }
        );
        assert_eq!(TiledTuning::parse("checks=all").unwrap().checks, RuntimeChecks::All);
        assert_eq!(TiledTuning::parse("fblock=8").unwrap().forward_block, 8);
        assert_eq!(TiledTuning::parse("ablock=8").unwrap().adjoint_block, 8);
        assert_eq!(TiledTuning::parse("checks=none").unwrap().checks, RuntimeChecks::None);
        assert!(TiledTuning::parse("keep=1").unwrap().keep);
        assert!(!TiledTuning::parse("keep=1,keep=0").unwrap().keep);
        for bad in
            ["db=3", "groups=0", "threads=5", "invocations=x", "checks=0", "checks", "fblock=6", "ablock=2", "keep=2"]
        {
            assert!(TiledTuning::parse(bad).is_err(), "{bad}");
        }
        let tuned = TiledTuning { invocations: 128, groups: 64, gradient_block: Some(4), ..TiledTuning::default() };
        let lim = wgpu::Limits { max_compute_workgroup_storage_size: 49152, ..wgpu::Limits::default() };
        let p = Plan::new(&model(Integrator::Hamiltonian, 32, 8), 65536, &lim, false, None, tuned).unwrap();
        assert_eq!((p.rq * 8, p.db), (128, 4));
        assert!(65536u32.div_ceil(4 * p.rq).div_ceil(p.tpw) <= 64);
    }
}
