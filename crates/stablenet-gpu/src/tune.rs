//! Step kernels tuned on the adapter at hand, as cuDNN's benchmark mode tunes convolutions:
//! every setting that makes a different [`Plan`] for the model and batch trains a few steps on
//! a synthetic batch, and the fastest is kept ([`GpuTrainer::tuned`](crate::GpuTrainer::tuned),
//! `stablenet train --tune`, `STABLENET_GPU_TUNE=1` for `cargo xtask bench`).
//!
//! Why: `TiledTuning`'s defaults were reasoned and timed on one H100; another GPU, or another
//! shape, may prefer 8 x 8 blocks, more workgroups, or the fused kernels. Every candidate is a
//! setting `cargo xtask validate` checks against the CPU twin, so a tuned run agrees with the
//! default within validate's tolerances; which candidate wins can change between runs when two
//! are close, so a tuned run reproduces bit for bit only with the setting it reports.
use crate::device::Gpu;
use crate::engine::{GpuNet, Hyper};
use crate::kernels::{KernelOptions, Plan, StepKernels};
use anyhow::{Context, Result, bail, ensure};
use stablenet_core::data::Dataset;
use stablenet_core::rng::Rng;
use stablenet_core::{ModelConfig, Params};
use std::time::Instant;

/// The default keeps its place unless another candidate takes less than this share of its
/// time, so that timing noise between equal kernels does not change the arithmetic from run
/// to run.
const MARGIN: f64 = 0.97;
/// Untimed steps before a candidate's timed ones, and at least [`WARMUP_S`] of them: they pay
/// for anything the driver builds lazily, and give an idle GPU time to raise its clocks, so
/// that the first candidate, the default, is not timed slow.
const WARMUP: usize = 2;
const WARMUP_S: f64 = 0.25;
/// Timed steps per candidate; their median counts.
const STEPS: usize = 5;

/// One candidate: its options, what it runs, and its median seconds per training step (or why
/// it did not run, or was not used).
#[derive(Clone, Debug)]
pub struct Trial {
    pub options: KernelOptions,
    /// `fused`, or `tiled fblock=F,ablock=A,groups=G` as asked (see `sizes` for what ran).
    pub setting: String,
    /// The network's [`GpuNet::kernel_sizes`] (empty where it was not built).
    pub sizes: String,
    pub seconds: std::result::Result<f64, String>,
    pub(crate) plan: Plan,
}

/// What [`tune`] timed and chose.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The first is the setting asked for (the engine's default unless the caller chose).
    pub trials: Vec<Trial>,
    pub chosen: usize,
    /// Wall-clock seconds the tuning took, building included.
    pub seconds: f64,
}

impl Tuning {
    pub fn options(&self) -> KernelOptions {
        self.trials[self.chosen].options
    }

    /// One line per trial, the chosen one marked; for logs.
    pub fn table(&self) -> String {
        let mut s = format!("kernel tuning, {} candidates in {:.1} s:\n", self.trials.len(), self.seconds);
        for (i, t) in self.trials.iter().enumerate() {
            let mark = if i == self.chosen { "*" } else { " " };
            let result = match &t.seconds {
                Ok(sec) => format!("{:.3} ms per step", 1e3 * sec),
                Err(e) => e.clone(),
            };
            s += &format!("  {mark} {:<40} {result}\n", t.setting);
        }
        s
    }
}

/// The settings tuning tries, each with its plan, without repeats: `base` first, then the
/// other step kernels where `base` leaves them to the engine (fused or tiled), and for tiled
/// steps 4 x 4 or 8 x 8 blocks in the forward and the adjoint, each with `base`'s workgroup
/// count and with 1024 (one tile per workgroup where 8 x 8 tiles are few). What `base` sets
/// otherwise (keep, checks, invocations, gradient blocks) every candidate keeps.
pub(crate) fn candidates(
    cfg: &ModelConfig,
    n: u32,
    lim: &wgpu::Limits,
    software: bool,
    base: KernelOptions,
) -> Vec<(KernelOptions, Plan)> {
    let kernels = match base.kernels {
        Some(k) => vec![Some(k)],
        None => vec![None, Some(StepKernels::Fused), Some(StepKernels::Tiled)],
    };
    let mut tried = vec![base];
    for k in kernels {
        for groups in [base.tiled.groups, 1024] {
            for (forward_block, adjoint_block) in [(4, 4), (8, 4), (4, 8), (8, 8)] {
                let tiled = crate::TiledTuning { groups, forward_block, adjoint_block, ..base.tiled };
                tried.push(KernelOptions { kernels: k, tiled });
            }
        }
    }
    let mut out: Vec<(KernelOptions, Plan)> = Vec::new();
    for o in tried {
        let Ok(plan) = Plan::new(cfg, n, lim, software, o.kernels, o.tiled) else { continue };
        if !out.iter().any(|(_, p)| *p == plan) {
            out.push((o, plan));
        }
    }
    out
}

/// Options from a trial's `setting` (`fused`, `per-example`, `tiled`, or `tiled` and
/// `STABLENET_GPU_TILED` keys), on top of `base` (the keep and checks of the run): a choice
/// tuning made, pinned for a later run (`stablenet train --kernels`) or a resumed one.
pub fn parse_setting(setting: &str, base: KernelOptions) -> Result<KernelOptions> {
    let (kernels, sizes) = setting.trim().split_once(' ').unwrap_or((setting.trim(), ""));
    let named = format!("kernel setting `{setting}`: expected fused, per-example or tiled, then any tiled sizes");
    let kernels = StepKernels::parse(kernels).ok().flatten().context(named)?;
    ensure!(
        sizes.is_empty() || kernels == StepKernels::Tiled,
        "kernel setting `{setting}`: only tiled kernels take sizes"
    );
    let tiled = base.tiled.with(sizes).with_context(|| format!("kernel setting `{setting}`"))?;
    Ok(KernelOptions { kernels: Some(kernels), tiled })
}

/// Whether `opts` can step the model in batches of `nmax` on this adapter: the error that
/// building it would give, without building it (a pinned setting is checked for every level
/// before the first trains).
pub fn check_options(gpu: &Gpu, cfg: &ModelConfig, nmax: usize, opts: KernelOptions) -> Result<()> {
    let nmax = u32::try_from(nmax).map_err(|_| anyhow::anyhow!("batch of {nmax}: the GPU kernels index in u32"))?;
    Plan::new(cfg, nmax, &gpu.limits, gpu.is_software(), opts.kernels, opts.tiled).map(|_| ())
}

/// A candidate's name in the table: its kernels and, for tiled ones, the sizes it asked for
/// (read back by [`parse_setting`] to the same plan). What the plan made of them (a block
/// edge 8 where the tiles cannot take it is 4) is in the trial's `sizes`.
fn setting(o: &KernelOptions, plan: &Plan) -> String {
    match plan.kernels {
        StepKernels::Tiled => {
            format!("tiled fblock={},ablock={},groups={}", o.tiled.forward_block, o.tiled.adjoint_block, o.tiled.groups)
        }
        k => k.name().to_string(),
    }
}

/// Which trial wins: the first (the setting asked for) unless another takes less than
/// [`MARGIN`] of its time; the fastest of the rest where the first did not run. None: none ran.
pub(crate) fn choose(seconds: &[Option<f64>]) -> Option<usize> {
    let best = (0..seconds.len())
        .filter(|&i| seconds[i].is_some())
        .min_by(|&a, &b| seconds[a].partial_cmp(&seconds[b]).expect("step times are finite"))?;
    match seconds.first().copied().flatten() {
        Some(first) if seconds[best].is_some_and(|s| s >= MARGIN * first) => Some(0),
        _ => Some(best),
    }
}

/// Times every candidate of [`candidates`] for [`STEPS`] training steps (after [`WARMUP`]) of
/// `n` examples, on networks built for batches of `nmax` as the trainer's will be, on a
/// synthetic batch (x ~ N(0, 1), labels in turn; the time does not depend on the values), one
/// network at a time, and returns what it chose. The setting asked for must have a plan (its
/// error is returned otherwise, as building it would); another candidate that cannot be built
/// or run, out of device memory included, is recorded with its error.
pub fn tune(
    gpu: &Gpu,
    cfg: &ModelConfig,
    params: &Params<f32>,
    nmax: usize,
    n: usize,
    hyper: Hyper,
    base: KernelOptions,
) -> Result<Tuning> {
    let start = Instant::now();
    ensure!(n >= 1 && n <= nmax, "kernel tuning: {n} examples per step for batches of at most {nmax}");
    check_options(gpu, cfg, nmax, base)?;
    let nmax32 = nmax as u32; // check_options refused more than u32 holds
    let (lim, software) = (&gpu.limits, gpu.is_software());
    let mut rng = Rng::new(0x7u64);
    let x = (0..n * cfg.d).map(|_| rng.normal() as f32).collect();
    let labels = (0..n).map(|i| (i % cfg.classes) as u32).collect();
    let data = Dataset { x, labels, d: cfg.d, classes: cfg.classes };
    let mut trials = Vec::new();
    for (options, plan) in candidates(cfg, nmax32, lim, software, base) {
        // The kernels the plan resolved, so that a network built from the options later runs
        // what was timed whatever its batch size.
        let options = KernelOptions { kernels: Some(plan.kernels), ..options };
        let timed = captured(gpu, || time_steps(gpu, cfg, params, nmax, &data, hyper, options));
        let (seconds, sizes) = match timed {
            Ok((s, sizes)) => (Ok(s), sizes),
            Err(e) => (Err(format!("not run: {e:#}")), String::new()),
        };
        let name = setting(&options, &plan);
        log::info!("tuning {name}: {seconds:?}");
        trials.push(Trial { options, setting: name, sizes, seconds, plan });
    }
    let chosen = choose(&trials.iter().map(|t| t.seconds.clone().ok()).collect::<Vec<_>>())
        .with_context(|| format!("kernel tuning: no candidate ran ({}: {:?})", trials[0].setting, trials[0].seconds))?;
    Ok(Tuning { trials, chosen, seconds: start.elapsed().as_secs_f64() })
}

/// Runs `f` with the device's out-of-memory, validation and internal errors caught (wgpu
/// otherwise hands them to its uncaptured-error handler, which panics): any of them is an
/// error of `f`'s.
pub(crate) fn captured<T>(gpu: &Gpu, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let filters = [wgpu::ErrorFilter::OutOfMemory, wgpu::ErrorFilter::Validation, wgpu::ErrorFilter::Internal];
    let scopes = filters.map(|filter| gpu.device.push_error_scope(filter));
    let result = f();
    let caught: Vec<String> =
        scopes.into_iter().rev().filter_map(|s| pollster::block_on(s.pop())).map(|e| e.to_string()).collect();
    match (result, caught.is_empty()) {
        (Ok(v), true) => Ok(v),
        (Ok(_), false) => bail!("{}", caught.join("; ")),
        (Err(e), _) if caught.is_empty() => Err(e),
        (Err(e), _) => Err(e.context(caught.join("; "))),
    }
}

/// Median wall-clock seconds of a training step and the readback of its loss, as
/// `cargo xtask bench` times them, and the network's `kernel_sizes`.
fn time_steps(
    gpu: &Gpu,
    cfg: &ModelConfig,
    params: &Params<f32>,
    nmax: usize,
    data: &Dataset,
    hyper: Hyper,
    options: KernelOptions,
) -> Result<(f64, String)> {
    let n = data.len();
    let mut net = GpuNet::with_options(gpu.clone(), cfg, nmax, n, Some(hyper), options)?;
    net.set_params(params)?;
    net.set_data(data)?;
    let mut times = Vec::with_capacity(STEPS);
    let warm = Instant::now();
    let mut i = 0;
    while i < WARMUP + STEPS {
        let t = Instant::now();
        net.train_step(0, n, 0)?;
        net.losses(1)?;
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64());
        }
        // The last warm-up step repeats until WARMUP_S has passed.
        if i + 1 != WARMUP || warm.elapsed().as_secs_f64() >= WARMUP_S {
            i += 1;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], net.kernel_sizes()))
}

#[cfg(test)]
mod tests {
    use super::{candidates, choose, setting};
    use crate::kernels::{KernelOptions, StepKernels, TiledTuning};
    use stablenet_core::{Activation, Integrator, ModelConfig};

    fn model(width: usize, steps: usize) -> ModelConfig {
        ModelConfig {
            d: 2,
            width,
            steps,
            final_time: 5.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 5,
        }
    }

    /// An H100's limits as wgpu reports them where they matter (binding size, workgroup memory).
    fn big() -> wgpu::Limits {
        wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 31,
            max_buffer_size: 1 << 31,
            max_compute_workgroup_storage_size: 49152,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            ..wgpu::Limits::default()
        }
    }

    /// wide: the default first, then every other block and workgroup count once; peaks-small
    /// adds the fused kernels; a forced choice and what `base` sets are kept by every candidate.
    #[test]
    fn candidates_are_distinct_plans_the_default_first() {
        let names = |cfg: &ModelConfig, n, base: KernelOptions| {
            candidates(cfg, n, &big(), false, base).iter().map(|(o, p)| setting(o, p)).collect::<Vec<_>>()
        };
        let wide = names(&model(128, 32), 32768, KernelOptions::default());
        assert_eq!(wide[0], "tiled fblock=4,ablock=4,groups=256", "{wide:?}");
        assert_eq!(wide.len(), 8, "{wide:?}");
        assert!(wide.contains(&"tiled fblock=8,ablock=8,groups=1024".to_string()), "{wide:?}");
        let peaks = names(&model(8, 64), 65536, KernelOptions::default());
        assert!(peaks[0].starts_with("tiled") && peaks.contains(&"fused".to_string()), "{peaks:?}");
        let forced = KernelOptions { kernels: Some(StepKernels::Fused), ..KernelOptions::default() };
        assert_eq!(names(&model(8, 64), 65536, forced), ["fused"]);
        let keep = KernelOptions { tiled: TiledTuning { keep: true, ..TiledTuning::default() }, kernels: None };
        let kept = candidates(&model(128, 32), 32768, &big(), false, keep);
        assert_eq!(kept.len(), 8);
        assert!(kept.iter().all(|(o, p)| o.tiled.keep && p.keep));
        // w = 30: only the forward takes 8 x 8 blocks (the adjoint's need w % 4 = 0), and its
        // 256 tiles have a workgroup each at either count.
        let w30 = names(&model(30, 8), 32768, KernelOptions::default());
        assert_eq!(w30, ["tiled fblock=4,ablock=4,groups=256", "tiled fblock=8,ablock=4,groups=256"]);
    }

    /// A setting read back gives the plan it names, for every candidate of wide and
    /// peaks-small, with the run's keep; nonsense is an error naming it.
    #[test]
    fn settings_read_back_to_their_plans() {
        let keep = KernelOptions { tiled: TiledTuning { keep: true, ..TiledTuning::default() }, kernels: None };
        // Where 8 x 8 blocks change the tiles but one of them falls back to 4 (w = 128 in 16 KiB
        // of workgroup memory, 256 in 32 KiB), two plans would have had one name.
        let shared = |bytes| wgpu::Limits { max_compute_workgroup_storage_size: bytes, ..big() };
        let cases = [
            (model(128, 32), 32768, KernelOptions::default(), big()),
            (model(8, 64), 65536, keep, big()),
            (model(128, 8), 32768, KernelOptions::default(), shared(16384)),
            (model(256, 4), 4096, KernelOptions::default(), shared(32768)),
        ];
        for (cfg, n, base, lim) in cases {
            let all = candidates(&cfg, n, &lim, false, base);
            let names: Vec<String> = all.iter().map(|(o, p)| setting(o, p)).collect();
            assert!(names.iter().enumerate().all(|(i, s)| !names[..i].contains(s)), "w = {}: {names:?}", cfg.width);
            for ((o, plan), name) in all.iter().zip(&names) {
                let read = super::parse_setting(name, base).unwrap();
                if plan.kernels == StepKernels::Tiled {
                    assert_eq!(read.tiled, o.tiled, "{name}");
                }
                let again = crate::kernels::Plan::new(&cfg, n, &lim, false, read.kernels, read.tiled).unwrap();
                assert_eq!(again, *plan, "{name}");
            }
        }
        for bad in ["", "auto", "tiled fblock=5", "fused groups=2", "tiles"] {
            let e = super::parse_setting(bad, KernelOptions::default()).unwrap_err();
            assert!(format!("{e:#}").contains(&format!("`{bad}`")), "{bad}: {e:#}");
        }
    }

    /// A device error inside `captured` comes back as an error (wgpu's default handler would
    /// panic), and the device goes on working; an error of the closure keeps its message.
    #[test]
    fn device_errors_are_errors_not_panics() {
        let gpu = crate::Gpu::new(&crate::DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
        let bad = wgpu::BufferDescriptor {
            label: Some("map-read storage"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        };
        let err = super::captured(&gpu, || Ok(gpu.device.create_buffer(&bad))).unwrap_err();
        assert!(format!("{err:#}").contains("map-read storage"), "{err:#}");
        let inner = super::captured(&gpu, || -> anyhow::Result<()> { anyhow::bail!("inner") }).unwrap_err();
        assert_eq!(format!("{inner:#}"), "inner");
        assert_eq!(super::captured(&gpu, || Ok(3)).unwrap(), 3);
    }

    /// The default stays unless another is clearly faster; failed trials never win.
    #[test]
    fn the_default_keeps_its_place_within_the_margin() {
        assert_eq!(choose(&[Some(1.0), Some(0.98), Some(1.2)]), Some(0));
        assert_eq!(choose(&[Some(1.0), Some(0.99), Some(0.5)]), Some(2));
        assert_eq!(choose(&[Some(1.0), None, Some(0.96)]), Some(2));
        assert_eq!(choose(&[None, Some(2.0), Some(1.5)]), Some(2));
        assert_eq!(choose(&[Some(1.0)]), Some(0));
        assert_eq!(choose(&[None, None]), None);
        assert_eq!(choose(&[]), None);
    }
}
