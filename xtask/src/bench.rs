//! `cargo xtask bench`: the workloads of `shared/spec/BENCH.md` on every backend of this
//! machine (the GPU engine on each wgpu adapter, the CPU engine) and, in the same process tree,
//! the PyTorch twin `benches/pytorch/bench.py`, so that every comparison is a ratio measured in
//! one run on one machine. Writes JSON lines and prints markdown tables; `benches/README.md`
//! documents the fields and how flops and memory are counted.
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use stablenet_core::data::Dataset;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, Rng, TrainConfig, Trainer};
use stablenet_gpu::{Gpu, GpuNet, Hyper, KernelOptions, StepKernels, TiledTuning};
use std::cell::RefCell;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask bench [--quick] [--out FILE] [--only NAME[,NAME..]] [--no-torch] \
    [--device NAME] [--software] [--no-cpu] [--no-gpu] [--steps K] [--tune] [--python PATH] \
    [--torch-args ARGS]\n       \
    cargo xtask bench --summarize FILE.jsonl";

const T_FINAL: f64 = 5.0;
const LR: f64 = 0.1;
/// (name, d, w, N, n on a CPU, n on a GPU, C): the table of BENCH.md.
const WORKLOADS: [(&str, usize, usize, usize, usize, usize, usize); 5] = [
    ("peaks-small", 2, 8, 64, 4096, 65536, 5),
    ("mid", 2, 32, 128, 4096, 65536, 5),
    ("wide", 64, 128, 32, 2048, 32768, 10),
    ("deep-256", 2, 8, 256, 1024, 16384, 5),
    ("deep-1024", 2, 8, 1024, 1024, 16384, 5),
];
const DEPTHS: [usize; 5] = [16, 64, 256, 1024, 4096];
const IMPLS: [&str; 5] = ["stablenet-gpu", "stablenet-cpu", "torch-eager", "torch-cudagraph", "torch-compile"];

struct Opts {
    quick: bool,
    out: Option<PathBuf>,
    only: Option<Vec<String>>,
    torch: bool,
    device: Option<String>,
    software: bool,
    cpu: bool,
    gpu: bool,
    steps: Option<usize>,
    /// Tune the GPU's step kernels before timing (also STABLENET_GPU_TUNE=1).
    tune: bool,
    python: Option<String>,
    torch_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        quick: false,
        out: None,
        only: None,
        torch: true,
        device: None,
        software: false,
        cpu: true,
        gpu: true,
        steps: None,
        tune: false,
        python: None,
        torch_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--out" => o.out = Some(value()?.into()),
            "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--no-torch" => o.torch = false,
            "--device" => o.device = Some(value()?),
            "--software" => o.software = true,
            "--no-cpu" => o.cpu = false,
            "--no-gpu" => o.gpu = false,
            "--steps" => o.steps = Some(value()?.parse().context("--steps")?),
            "--tune" => o.tune = true,
            "--python" => o.python = Some(value()?),
            "--torch-args" => o.torch_args = value()?.split_whitespace().map(str::to_owned).collect(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => bail!("bench: unknown option {other}\n{USAGE}"),
        }
    }
    ensure!(o.steps != Some(0), "--steps must be at least 1");
    ensure!(o.cpu || o.gpu, "--no-cpu and --no-gpu together leave nothing to run");
    ensure!(o.gpu || o.device.is_none(), "--device picks a GPU adapter; it makes no sense with --no-gpu");
    Ok(o)
}

/// One workload at one size. `target` is "cpu" or "gpu": which batch sizes of BENCH.md apply
/// (software adapters such as lavapipe run the CPU sizes).
#[derive(Clone, Debug, serde::Serialize)]
struct Job {
    config: String,
    d: usize,
    w: usize,
    #[serde(rename = "N")]
    n_steps: usize,
    #[serde(rename = "C")]
    c: usize,
    n: usize,
    target: &'static str,
}

/// Every job, for both targets. Mirrors `default_plan()` in benches/pytorch/bench.py, which
/// receives this list when run from here.
fn plan(quick: bool) -> Vec<Job> {
    let mut jobs = Vec::new();
    for target in ["cpu", "gpu"] {
        let mut job = |config: &str, d, w, n_steps, c, n| {
            jobs.push(Job { config: config.into(), d, w, n_steps, c, n, target });
        };
        for (name, d, w, steps, n_cpu, n_gpu, c) in WORKLOADS {
            let n = if target == "cpu" { n_cpu } else { n_gpu };
            job(name, d, w, if quick { steps.min(8) } else { steps }, c, if quick { 64 } else { n });
        }
        let (sizes, depths, depth_n): (Vec<usize>, Vec<usize>, usize) = if quick {
            (vec![32, 64], vec![4, 16], 64)
        } else if target == "cpu" {
            ((0..7).map(|k| 256 << k).collect(), DEPTHS.to_vec(), 1024) // n = 256 .. 16k
        } else {
            ((0..9).map(|k| 1024 << k).collect(), DEPTHS.to_vec(), 16384) // n = 1k .. 256k
        };
        for n in sizes {
            job("scale-n", 2, 8, if quick { 8 } else { 64 }, 5, n);
        }
        for steps in depths {
            job("scale-N", 2, 8, steps, 5, depth_n);
        }
        for steps in if quick { vec![4, 16] } else { DEPTHS.to_vec() } {
            job("mem-depth", 2, 8, steps, 5, if quick { 64 } else { 1024 });
        }
    }
    jobs
}

/// 2 x the multiply-adds of one training step of the reversible Verlet network, counted the
/// same way for every implementation: per example w d (opening) + w d (dK_in); per step
/// 2 w^2 forward and 6 w^2 in the adjoint (two mat-vecs that rebuild the state, two for the
/// adjoints, two outer products for dK_j); C w forward + 2 C w backward (classifier); plus one
/// multiply-add per parameter for the SGD update. Activations and reductions are not counted.
fn flops_per_step(j: &Job) -> u64 {
    let (d, w, steps, n, c) = (j.d as u64, j.w as u64, j.n_steps as u64, j.n as u64, j.c as u64);
    let params = w * d + w + steps * (w * w + w) + c * w + c;
    2 * (n * (2 * w * d + 8 * steps * w * w + 3 * c * w) + params)
}

/// Bytes of the f32 parameters (the gradient has as many).
fn param_bytes(j: &Job) -> u64 {
    let (d, w, steps, c) = (j.d as u64, j.w as u64, j.n_steps as u64, j.c as u64);
    4 * (w * d + w + steps * (w * w + w) + c * w + c)
}

fn model(j: &Job) -> ModelConfig {
    ModelConfig {
        d: j.d,
        width: j.w,
        steps: j.n_steps,
        final_time: T_FINAL,
        integrator: Integrator::Hamiltonian,
        activation: Activation::Tanh,
        gamma: 0.0,
        classes: j.c,
    }
}

/// x ~ N(0, 1), labels uniform in 0..C (BENCH.md).
fn batch(j: &Job, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let x = (0..j.n * j.d).map(|_| rng.normal() as f32).collect();
    let labels = (0..j.n).map(|_| rng.below(j.c) as u32).collect();
    Dataset { x, labels, d: j.d, classes: j.c }
}

/// One training step on a fixed batch, ending with its loss on the host (None where the
/// backend does not report it).
type StepFn = Box<dyn FnMut() -> Result<Option<f32>>>;

struct Stepper {
    /// What computes, for the `device` field (after the CPU model for CPU steppers).
    what: String,
    threads: usize,
    /// Bytes of the parameter-shaped buffers beyond the parameters (gradient, optimiser
    /// state, packed operators), the `param_state_bytes` field.
    state_bytes: u64,
    /// Bytes of every other buffer the engine holds, counted exactly (`work_bytes`); asked
    /// after the timed steps, once the engine has seen the batch.
    work_bytes: Box<dyn Fn() -> u64>,
    /// GPU: the kernels that stepped the integrator (`gpu_kernels`: `StepKernels::name`) and
    /// their sizes (`gpu_kernel_sizes`: `GpuNet::kernel_sizes`).
    kernels: Option<(&'static str, String)>,
    step: StepFn,
    /// GPU: one more step with its phases timed on the device (`gpu_phases_s`).
    profile: Option<ProfileFn>,
    /// GPU with `STABLENET_GPU_TUNE=1`: what kernel tuning timed and chose (`gpu_tuning`).
    tuning: Option<Value>,
}

type ProfileFn = Box<dyn FnMut() -> Result<Option<Vec<(&'static str, f64)>>>>;

/// Builds the CPU stepper: the plain SGD (lr 0.1) training step of BENCH.md through
/// `stablenet_core::Trainer<f32>`, whose f32 fast path runs on every thread of the machine
/// (same bits for any thread count).
fn cpu_stepper(cfg: &ModelConfig, params: Params<f32>, data: Dataset) -> Result<Stepper> {
    let tc = TrainConfig {
        epochs: 1,
        batch_size: data.len(),
        optimizer: OptimizerKind::sgd(LR, 0.0)?,
        regularizer: Regularizer::default(),
        seed: 1,
        method: None,
    };
    let mut t = Trainer::<f32>::new(cfg.clone(), params, tc)?;
    ensure!(t.uses_fast_path(), "the CPU trainer did not pick its fast path");
    t.set_threads(cores());
    let threads = t.threads_for(data.len());
    let state_bytes = t.state_bytes() as u64;
    let t = Rc::new(RefCell::new(t));
    let t2 = Rc::clone(&t);
    let step = Box::new(move || Ok(Some(t.borrow_mut().step(&data.x, &data.labels)?.1 as f32)));
    let work_bytes = Box::new(move || t2.borrow().work_bytes().unwrap_or(0) as u64);
    let what = format!("stablenet_core::Trainer<f32> (fast path), up to {} threads", cores());
    Ok(Stepper { what, threads, state_bytes, work_bytes, kernels: None, step, profile: None, tuning: None })
}

/// `STABLENET_GPU_KERNELS=per-example|fused|tiled` (unset or `auto`: the engine's choice)
/// forces the kernels that step the integrator (`GpuNet::with_kernels`), to time them side by
/// side on a device; `fused` exists for narrow nets only (w^2 + w <= 128), and a workload
/// that cannot run the kernels asked for fails with the reason.
/// `STABLENET_GPU_TILED=invocations=N,groups=N,db=N,checks=all|bounds|none,fblock=4|8,
/// ablock=4|8,keep=0|1` sizes or builds the tiled steps otherwise than by default
/// (`TiledTuning`), for the same purpose. `--tune` or `STABLENET_GPU_TUNE=1` then tunes from there
/// (`stablenet_gpu::tune`, as `stablenet train --tune`): every other setting the workload
/// allows trains a few steps first, and the fastest is timed (`gpu_tuning` says what ran).
fn gpu_options() -> Result<KernelOptions> {
    let kernels = match std::env::var("STABLENET_GPU_KERNELS").as_deref() {
        Err(_) | Ok("") => None,
        Ok(v) => StepKernels::parse(v).map_err(|e| anyhow::anyhow!("STABLENET_GPU_KERNELS: {e}"))?,
    };
    let tiled = match std::env::var("STABLENET_GPU_TILED") {
        Err(_) => TiledTuning::default(),
        Ok(v) => TiledTuning::parse(&v).map_err(|e| anyhow::anyhow!("STABLENET_GPU_TILED: {e}"))?,
    };
    Ok(KernelOptions { kernels, tiled })
}

/// The GPU stepper: one submit per step (`GpuNet::train_step`), then the loss read back.
fn gpu_stepper(gpu: Gpu, cfg: &ModelConfig, params: &Params<f32>, data: &Dataset, tune: bool) -> Result<Stepper> {
    let hyper = Hyper { optimizer: OptimizerKind::sgd(LR, 0.0)?, regularizer: Regularizer::default() };
    let n = data.len();
    let mut options = gpu_options()?;
    let tune = match std::env::var("STABLENET_GPU_TUNE").as_deref() {
        Err(_) | Ok("" | "0") => tune,
        Ok("1") => true,
        Ok(v) => bail!("STABLENET_GPU_TUNE={v}: expected 1 or 0"),
    };
    let tuning = match tune {
        false => None,
        true => {
            let t = stablenet_gpu::tune::tune(&gpu, cfg, params, n, n, hyper, options)?;
            eprint!("bench: {}", t.table());
            options = t.options();
            let trials: Vec<Value> = t
                .trials
                .iter()
                .map(|t| match &t.seconds {
                    Ok(s) => json!({ "setting": t.setting, "s_per_step": s }),
                    Err(e) => json!({ "setting": t.setting, "error": e }),
                })
                .collect();
            Some(json!({ "chosen": t.trials[t.chosen].setting, "seconds": t.seconds, "trials": trials }))
        }
    };
    let mut net = GpuNet::with_options(gpu, cfg, n, n, Some(hyper), options)?;
    net.set_params(params)?;
    net.set_data(data)?;
    let (work, state_bytes) = (net.work_bytes(), net.state_bytes());
    let what = net.gpu().describe();
    let kernels = (net.kernels().name(), net.kernel_sizes());
    let net = Rc::new(RefCell::new(net));
    let profiled = Rc::clone(&net);
    let step = Box::new(move || {
        let mut net = net.borrow_mut();
        net.train_step(0, n, 0)?;
        Ok(Some(net.losses(1)?[0]))
    });
    let profile: ProfileFn = Box::new(move || profiled.borrow_mut().profile_step(0, n, 0));
    Ok(Stepper {
        what,
        threads: 1,
        state_bytes,
        work_bytes: Box::new(move || work),
        kernels: Some(kernels),
        step,
        profile: Some(profile),
        tuning,
    })
}

/// Median, min and max seconds of `steps` timed steps after `warmup` steps, and the last loss.
fn time_steps(step: &mut StepFn, warmup: usize, steps: usize) -> Result<(f64, f64, f64, Option<f32>)> {
    for _ in 0..warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(steps);
    let mut loss = None;
    for _ in 0..steps {
        let t = Instant::now();
        loss = step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let k = times.len();
    let median = if k % 2 == 1 { times[k / 2] } else { 0.5 * (times[k / 2 - 1] + times[k / 2]) };
    Ok((median, times[0], times[k - 1], loss))
}

// ---- process memory (CPU) -----------------------------------------------------------

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_trim() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim only returns free heap pages to the OS.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() {}

/// Peak RSS growth over a window: freed heap pages go back to the OS (malloc_trim), the
/// high-water mark VmHWM is reset to the current RSS (`5` into /proc/self/clear_refs), and the
/// peak is VmHWM at the end minus VmRSS at the start. Where clear_refs is not writable, only
/// the growth of VmHWM beyond its earlier peak shows (`vmhwm-growth`).
struct RssWindow {
    base_kib: u64,
    method: &'static str,
}

impl RssWindow {
    /// None without /proc (no measurement; the line says `unavailable`).
    fn start() -> Option<Self> {
        malloc_trim();
        if std::fs::write("/proc/self/clear_refs", "5").is_ok() {
            return Some(RssWindow { base_kib: status_kib("VmRSS")?, method: "vmhwm-clear-refs" });
        }
        Some(RssWindow { base_kib: status_kib("VmHWM")?, method: "vmhwm-growth" })
    }

    fn peak_bytes(&self) -> Option<u64> {
        Some(1024 * status_kib("VmHWM")?.saturating_sub(self.base_kib))
    }
}

// ---- the machine --------------------------------------------------------------------

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|p| p.1.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The 1-minute load average when the job starts (/proc/loadavg; null elsewhere): on a
/// shared machine, load that hits one side of a comparison and not the other shows here.
pub(crate) fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).map_or(Value::Null, Value::from)
}

pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// UTC now as (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ) (civil-from-days, H. Hinnant).
pub(crate) fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let time = format!("{date}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60);
    (date, time)
}

/// Where a run's JSON lines go: `--out`, which may not end in .md (the summary goes beside it
/// as .md), or by default `benches/results/<stem>.jsonl`, or `<stem>-2.jsonl`, `-3`, .. when
/// that exists: a second run on the same day (or an --only rerun) must not replace the first.
pub(crate) fn results_path(out: Option<&Path>, stem: &str) -> Result<PathBuf> {
    if let Some(out) = out {
        ensure!(out.extension().is_none_or(|e| e != "md"), "--out: the summary goes beside it as .md; give a .jsonl");
        return Ok(out.to_path_buf());
    }
    let dir = root().join("benches/results");
    Ok((1..)
        .map(|k| dir.join(if k == 1 { format!("{stem}.jsonl") } else { format!("{stem}-{k}.jsonl") }))
        .find(|p| !p.exists())
        .expect("some k is free"))
}

/// The workspace: where this binary was built, or, for a binary copied to another machine
/// (a borrowed GPU box without Rust), the current folder when that is a checkout.
pub(crate) fn root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace");
    if built.join("benches").is_dir() {
        return built.to_path_buf();
    }
    std::env::current_dir().ok().filter(|d| d.join("benches").is_dir()).unwrap_or_else(|| built.to_path_buf())
}

// ---- running ------------------------------------------------------------------------

struct Run {
    opts: Opts,
    warmup: usize,
    steps: usize,
    out: std::io::BufWriter<std::fs::File>,
    records: Vec<Value>,
    /// The engine backends that ran: (impl, device as in the lines, target), for the check.
    ran: Vec<(&'static str, String, &'static str)>,
}

impl Run {
    fn emit(&mut self, rec: Value) -> Result<()> {
        writeln!(self.out, "{rec}")?;
        self.out.flush()?;
        let s = rec["s_per_step"]
            .as_f64()
            .map_or_else(|| format!("error: {}", rec["error"]), |s| format!("{s:.4e} s/step"));
        eprintln!(
            "bench: {} {} N={} n={}: {s}",
            rec["impl"].as_str().unwrap_or("?"),
            rec["config"].as_str().unwrap_or("?"),
            rec["N"],
            rec["n"]
        );
        self.records.push(rec);
        Ok(())
    }

    /// The JSON line of one job on one backend; `measure` builds the stepper (and reports the
    /// device bytes it needs where it knows them) and is timed here.
    fn record(
        &self,
        job: &Job,
        imp: &str,
        device: &str,
        software: bool,
        measure: impl FnOnce() -> Result<Stepper>,
        cpu_memory: bool,
    ) -> Value {
        let (_, date) = now_utc();
        let flops = flops_per_step(job);
        let mut rec = json!({
            "impl": imp, "device": device, "software": software, "config": job.config,
            "integrator": "hamiltonian", "d": job.d, "w": job.w, "N": job.n_steps, "n": job.n, "C": job.c,
            "T": T_FINAL, "target": job.target, "threads": null, "warmup": self.warmup, "steps": self.steps,
            "s_per_step": null, "s_min": null, "s_max": null, "samples_per_s": null,
            "flops_per_step": flops, "param_bytes": param_bytes(job), "gflops": null,
            "peak_mem_bytes": null, "mem_method": null, "param_state_bytes": null, "work_bytes": null, "gpu_kernels": null, "gpu_kernel_sizes": null, "gpu_phases_s": null, "gpu_tuning": null,
            "loss": null,
            "build": if cfg!(debug_assertions) { "debug" } else { "release" }, "date": date, "host": host(),
            "loadavg": loadavg(),
        });
        let result = (|| -> Result<()> {
            // Data and parameters exist before the window opens; the stepper's own allocations
            // (workspaces, gradients) fall inside it.
            let window = if cpu_memory { RssWindow::start() } else { None };
            let mut stepper = measure()?;
            let (median, min, max, loss) = time_steps(&mut stepper.step, self.warmup, self.steps)?;
            if let Some(l) = loss {
                ensure!(l.is_finite(), "the loss became {l}");
            }
            rec["threads"] = json!(stepper.threads);
            rec["param_state_bytes"] = json!(stepper.state_bytes);
            let work = (stepper.work_bytes)();
            rec["work_bytes"] = json!(work);
            rec["gpu_kernels"] = json!(stepper.kernels.as_ref().map(|k| k.0));
            rec["gpu_kernel_sizes"] = json!(stepper.kernels.as_ref().map(|k| &k.1));
            rec["gpu_tuning"] = stepper.tuning.take().unwrap_or(Value::Null);
            if let Some(phases) = stepper.profile.as_mut().map(|p| p()).transpose()?.flatten() {
                rec["gpu_phases_s"] = phases.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            }
            if cpu_memory {
                // The RSS growth holds the parameter-shaped buffers too; the field is what
                // the step needs beyond them, as on the GPU (they are all written every step,
                // so all resident). The fallback only sees growth beyond an earlier peak, from
                // which nothing can be taken: it stays as measured.
                rec["device"] = json!(format!("{device}; {}", stepper.what));
                let peak = window.as_ref().and_then(RssWindow::peak_bytes);
                let (peak, method) = match window.as_ref().map(|w| w.method) {
                    Some(m @ "vmhwm-clear-refs") => {
                        (peak.map(|b| b.saturating_sub(stepper.state_bytes)), format!("{m}-minus-state"))
                    }
                    Some(m) => (peak, m.to_owned()),
                    None => (None, "unavailable".to_owned()),
                };
                rec["peak_mem_bytes"] = json!(peak);
                rec["mem_method"] = json!(method);
            } else {
                rec["peak_mem_bytes"] = json!(work);
                rec["mem_method"] = json!("gpu-work-bytes");
            }
            rec["s_per_step"] = json!(median);
            rec["s_min"] = json!(min);
            rec["s_max"] = json!(max);
            rec["samples_per_s"] = json!(job.n as f64 / median);
            rec["gflops"] = json!(flops as f64 / median / 1e9);
            rec["loss"] = json!(loss);
            Ok(())
        })();
        if let Err(e) = result {
            rec["error"] = json!(format!("{e:#}"));
        }
        rec
    }

    fn cpu(&mut self, jobs: &[Job]) -> Result<()> {
        let device = format!("{} ({} threads)", cpu_model(), cores());
        self.ran.push(("stablenet-cpu", device.clone(), "cpu"));
        // One untimed step first, with a tile for every thread: the worker threads' first-use
        // costs (stacks, allocator arenas) would otherwise land in the first job's memory.
        let warm = Job { config: "warm-up".into(), d: 2, w: 8, n_steps: 4, c: 5, n: 4096, target: "cpu" };
        let mut warm_up = cpu_stepper(&model(&warm), Params::init(&model(&warm), 1), batch(&warm, 1))?;
        (warm_up.step)()?;
        drop(warm_up);
        for job in jobs.iter().filter(|j| j.target == "cpu") {
            let cfg = model(job);
            let params = Params::<f32>::init(&cfg, 2);
            let data = batch(job, 1);
            let rec = self.record(job, "stablenet-cpu", &device, false, || cpu_stepper(&cfg, params, data), true);
            self.emit(rec)?;
        }
        Ok(())
    }

    fn gpus(&mut self, jobs: &[Job]) -> Result<()> {
        let adapters = stablenet_gpu::device::adapters();
        if adapters.is_empty() {
            eprintln!("bench: no GPU adapter found");
        }
        let want = self.opts.device.as_ref().map(|n| n.to_lowercase());
        let named = |a: &wgpu::Adapter| want.as_ref().is_none_or(|n| a.get_info().name.to_lowercase().contains(n));
        if self.opts.device.is_some() && !adapters.iter().any(named) {
            let all: Vec<String> = adapters.iter().map(|a| stablenet_gpu::device::describe(&a.get_info())).collect();
            bail!("--device {} matches no adapter; available: {}", want.unwrap_or_default(), all.join("; "));
        }
        for adapter in adapters {
            let info = adapter.get_info();
            let label = stablenet_gpu::device::describe(&info);
            let software = info.device_type == wgpu::DeviceType::Cpu;
            let name_ok = named(&adapter);
            if !name_ok || (software && !self.opts.software) {
                eprintln!("bench: skipping {label}{}", if name_ok { " (software; --software runs it)" } else { "" });
                continue;
            }
            // A software adapter computes on the CPU: it runs the CPU batch sizes.
            let target = if software { "cpu" } else { "gpu" };
            self.ran.push(("stablenet-gpu", label.clone(), target));
            for job in jobs.iter().filter(|j| j.target == target) {
                let cfg = model(job);
                let params = Params::<f32>::init(&cfg, 2);
                let data = batch(job, 1);
                let measure = || gpu_stepper(Gpu::from_adapter(&adapter)?, &cfg, &params, &data, self.opts.tune);
                let rec = self.record(job, "stablenet-gpu", &label, software, measure, false);
                self.emit(rec)?;
            }
        }
        Ok(())
    }

    /// benches/pytorch/bench.py with this run's plan; its JSON lines join ours.
    fn torch(&mut self, jobs: &[Job]) -> Result<()> {
        let Some(python) = find_python(self.opts.python.as_deref()) else {
            eprintln!(
                "bench: no Python with torch (tried --python, $STABLENET_PYTHON, python3); skipping PyTorch. \
                 Point STABLENET_PYTHON at one (benches/README.md)"
            );
            return Ok(());
        };
        let plan = std::env::temp_dir().join(format!("stablenet-bench-plan-{}.json", std::process::id()));
        std::fs::write(&plan, serde_json::to_string(jobs)?)?;
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(root().join("benches/pytorch/bench.py")).args(["--quiet", "--plan"]).arg(&plan);
        cmd.args(["--steps", &self.steps.to_string(), "--warmup", &self.warmup.to_string()]);
        if self.opts.quick {
            cmd.arg("--quick");
        }
        if !self.opts.gpu {
            cmd.args(["--device", "cpu"]);
        } else if !self.opts.cpu {
            cmd.args(["--device", "cuda"]);
        }
        cmd.args(&self.opts.torch_args);
        eprintln!("bench: PyTorch: {cmd:?}");
        let mut child =
            cmd.stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("running {python}"))?;
        let stdout = child.stdout.take().expect("piped");
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            match serde_json::from_str::<Value>(&line) {
                Ok(rec) if rec.is_object() => self.emit(rec)?,
                _ => eprintln!("bench.py: {line}"),
            }
        }
        let status = child.wait()?;
        let _ = std::fs::remove_file(&plan);
        if !status.success() {
            eprintln!("bench: bench.py exited with {status}");
        }
        Ok(())
    }
}

/// The first of --python, $STABLENET_PYTHON, python3 that imports torch.
pub(crate) fn find_python(explicit: Option<&str>) -> Option<String> {
    let env = std::env::var("STABLENET_PYTHON").ok().filter(|s| !s.is_empty());
    [explicit.map(str::to_owned), env, Some("python3".into())].into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import torch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

// ---- checking and summarising -------------------------------------------------------

/// Checks one JSON line: every required field with a sane value; a line with `error` passes
/// only for torch-compile and torch-cudagraph (compilation or capture may fail; that is
/// reported, not fatal).
fn check_record(rec: &Value) -> Result<()> {
    let obj = rec.as_object().context("not a JSON object")?;
    let imp = obj.get("impl").and_then(Value::as_str).context("impl missing")?;
    ensure!(IMPLS.contains(&imp), "unknown impl {imp:?}");
    for key in ["device", "config", "date"] {
        let s = obj.get(key).and_then(Value::as_str).with_context(|| format!("{key} missing or not a string"))?;
        ensure!(!s.is_empty(), "{key} is empty");
    }
    for key in ["d", "w", "N", "n", "C", "flops_per_step"] {
        let v = obj.get(key).and_then(Value::as_u64).with_context(|| format!("{key} missing or not an integer"))?;
        ensure!(v > 0, "{key} = 0");
    }
    if let Some(e) = obj.get("error") {
        ensure!(imp == "torch-compile" || imp == "torch-cudagraph", "{imp} failed: {e}");
        return Ok(());
    }
    for key in ["s_per_step", "samples_per_s", "gflops"] {
        let v = obj.get(key).and_then(Value::as_f64).with_context(|| format!("{key} missing or not a number"))?;
        ensure!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    let mem = obj.get("peak_mem_bytes").context("peak_mem_bytes missing")?;
    let unmeasured = mem.is_null() && obj.get("mem_method").and_then(Value::as_str) == Some("unavailable");
    ensure!(mem.is_u64() || unmeasured, "peak_mem_bytes = {mem}, not a byte count");
    if imp.starts_with("stablenet") {
        let state = obj.get("param_state_bytes").and_then(Value::as_u64);
        ensure!(state.is_some_and(|b| b > 0), "param_state_bytes missing from an engine line");
        ensure!(obj.get("work_bytes").is_some_and(Value::is_u64), "work_bytes missing from an engine line");
    }
    Ok(())
}

/// Re-reads the output file and checks every line and that each backend ran every job.
fn check_file(path: &Path, expected: &[(String, usize)]) -> Result<()> {
    let mut count = std::collections::BTreeMap::<String, usize>::new();
    for (i, rec) in read_lines(path)?.iter().enumerate() {
        check_record(rec).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let key = format!("{} on {}", rec["impl"].as_str().unwrap_or("?"), rec["device"].as_str().unwrap_or("?"));
        *count.entry(key.split("; ").next().unwrap_or("?").to_owned()).or_default() += 1;
    }
    for (who, want) in expected {
        let have = count.get(who).copied().unwrap_or(0);
        ensure!(have == *want, "{who}: {have} lines, expected {want}");
    }
    Ok(())
}

fn fmt_s(v: &Value) -> String {
    v.as_f64().map_or_else(|| "error".into(), |s| format!("{s:.3e}"))
}

fn fmt_ratio(r: f64) -> String {
    if (0.01..1000.0).contains(&r) { format!("{r:.2}") } else { format!("{r:.1e}") }
}

fn fmt_bytes(v: &Value) -> String {
    match v.as_u64() {
        None => "-".into(),
        Some(b) if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

/// The PyTorch line that an engine line compares with: same job, same kind of machine (CPU
/// engines and software adapters against torch on the CPU, GPUs against CUDA).
fn torch_twin<'a>(records: &'a [Value], rec: &Value, imp: &str) -> Option<&'a Value> {
    let torch_target = if rec["impl"] == "stablenet-gpu" && rec["software"] != true { "gpu" } else { "cpu" };
    records.iter().find(|t| {
        t["impl"] == imp
            && t["target"] == torch_target
            && ["config", "d", "w", "N", "n", "C"].iter().all(|k| t[k] == rec[k])
            && t["s_per_step"].is_f64()
    })
}

fn summary(records: &[Value]) -> String {
    // The run's own stamp (a summary can be rebuilt later from the lines: --summarize).
    let first = records.first();
    let date = first.and_then(|r| r["date"].as_str()).map_or_else(|| now_utc().1, str::to_owned);
    let host = first.and_then(|r| r["host"].as_str()).map_or_else(host, str::to_owned);
    let mut s = format!("Run of {date} on {host}: compare ratios within this run only.\n\n");
    let short = |r: &Value| {
        let name = r["device"].as_str().unwrap_or("?").split(" (").next().unwrap_or("?");
        format!("{name}{}", if r["software"] == true { " (software)" } else { "" })
    };
    s += "| workload | d | w | N | n | impl | device | s/step | samples/s | GFLOP/s | peak mem | / torch-eager | / torch-cudagraph | / torch-compile |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    let main: Vec<&Value> = records.iter().filter(|r| WORKLOADS.iter().any(|w| r["config"] == w.0)).collect();
    for r in &main {
        let ratio = |imp| {
            let engine = r["impl"].as_str().is_some_and(|i| i.starts_with("stablenet"));
            match (engine, r["s_per_step"].as_f64(), torch_twin(records, r, imp)) {
                (true, Some(a), Some(t)) => fmt_ratio(a / t["s_per_step"].as_f64().unwrap_or(f64::NAN)),
                _ => String::new(),
            }
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["config"].as_str().unwrap_or("?"),
            r["d"],
            r["w"],
            r["N"],
            r["n"],
            r["impl"].as_str().unwrap_or("?"),
            short(r),
            fmt_s(&r["s_per_step"]),
            r["samples_per_s"].as_f64().map_or("-".into(), |v| format!("{v:.0}")),
            r["gflops"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            fmt_bytes(&r["peak_mem_bytes"]),
            ratio("torch-eager"),
            ratio("torch-cudagraph"),
            ratio("torch-compile"),
        );
    }
    s += "\nRatios are engine s/step over PyTorch s/step for the same job on the same kind of device \
          (below 1: the engine is faster).\n";
    // Curves: one row per (curve, impl, device), points "x: value".
    for (curve, x, what) in [
        ("scale-n", "n", "s/step"),
        ("scale-N", "N", "s/step"),
        ("mem-depth", "N", "peak memory beyond the parameters"),
    ] {
        if !records.iter().any(|r| r["config"] == curve) {
            continue;
        }
        s += &format!("\n{curve}: {what} against {x}\n\n| impl | device | {x}: {what} |\n|---|---|---|\n");
        let mut keys: Vec<(String, String, String)> = Vec::new();
        for r in records.iter().filter(|r| r["config"] == curve) {
            let dev = r["device"].as_str().unwrap_or("?").to_owned();
            let k = (r["impl"].as_str().unwrap_or("?").to_owned(), dev, short(r));
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for (imp, dev, name) in keys {
            let points: Vec<String> = records
                .iter()
                .filter(|r| r["config"] == curve && r["impl"] == imp.as_str() && r["device"] == dev.as_str())
                .map(|r| {
                    let v = match (curve, r["param_state_bytes"].is_u64()) {
                        ("mem-depth", true) => format!(
                            "{} (exact {}; + {} state)",
                            fmt_bytes(&r["peak_mem_bytes"]),
                            fmt_bytes(&r["work_bytes"]),
                            fmt_bytes(&r["param_state_bytes"])
                        ),
                        ("mem-depth", false) => fmt_bytes(&r["peak_mem_bytes"]),
                        _ => fmt_s(&r["s_per_step"]),
                    };
                    format!("{}: {v}", r[x])
                })
                .collect();
            s += &format!("| {imp} | {name} | {} |\n", points.join(", "));
        }
    }
    // Where a GPU step's time goes: one more step with device timestamps per phase.
    let profiled: Vec<&Value> = records.iter().filter(|r| r["gpu_phases_s"].is_object()).collect();
    if !profiled.is_empty() {
        s += "\nGPU phases of one more step (device timestamps; GpuNet::profile_step), seconds\n\n\
              | config | kernels | n | forward | loss | adjoint | opening | update |\n|---|---|---|---|---|---|---|---|\n";
        for r in profiled {
            let p = &r["gpu_phases_s"];
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r["config"].as_str().unwrap_or("?"),
                r["gpu_kernels"].as_str().unwrap_or("?"),
                r["n"],
                fmt_s(&p["forward"]),
                fmt_s(&p["loss"]),
                fmt_s(&p["adjoint"]),
                fmt_s(&p["opening"]),
                fmt_s(&p["update"]),
            );
        }
    }
    s
}

/// The JSON lines of a results file.
/// The JSON lines of a results file; blank lines are skipped, and a last line cut short (a
/// run killed while writing it) is dropped with a warning.
fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (k, &(i, l)) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(v) => out.push(v),
            Err(_) if k + 1 == lines.len() && !text.ends_with('\n') => {
                eprintln!("warning: {}:{}: a line cut short, left out", path.display(), i + 1)
            }
            Err(e) => bail!("{}:{}: not JSON ({e})", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// `--summarize FILE`: the markdown tables of a finished (or cut-short) run's JSON lines,
/// written beside it as FILE.md.
fn summarize(path: &Path) -> Result<()> {
    ensure!(path.extension().is_none_or(|e| e != "md"), "--summarize reads the JSON lines and writes FILE.md");
    let table = summary(&read_lines(path)?);
    std::fs::write(path.with_extension("md"), &table)?;
    println!("{table}");
    Ok(())
}

pub fn main(args: &[String]) -> Result<()> {
    if let [flag, file] = args
        && flag == "--summarize"
    {
        return summarize(Path::new(file));
    }
    let opts = parse(args)?;
    // Timings of a debug build mean nothing: rerun in release (a --quick run only checks that
    // everything runs, so it stays in whatever build it is).
    if cfg!(debug_assertions) && !opts.quick {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["run", "--release", "--quiet", "--package", "xtask", "--manifest-path"])
            .arg(root().join("Cargo.toml"))
            .args(["--", "bench"])
            .args(args)
            .status()?;
        ensure!(status.success(), "bench (release) failed ({status})");
        return Ok(());
    }
    let (date, _) = now_utc();
    let out_path = results_path(opts.out.as_deref(), &format!("{date}-{}", host()))?;
    if let Some(dir) = out_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let (warmup, steps) = if opts.quick { (0, 1) } else { (1, 5) };
    let steps = opts.steps.unwrap_or(steps);
    let mut jobs = plan(opts.quick);
    if let Some(only) = &opts.only {
        for name in only {
            ensure!(jobs.iter().any(|j| j.config == *name), "--only: no workload {name:?}");
        }
        jobs.retain(|j| only.contains(&j.config));
    }
    // Only now: a mistyped option must not empty the day's results file.
    let file = std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let mut run = Run { opts, warmup, steps, out: std::io::BufWriter::new(file), records: Vec::new(), ran: Vec::new() };
    let start = Instant::now();
    if run.opts.gpu {
        run.gpus(&jobs)?;
    }
    if run.opts.cpu {
        run.cpu(&jobs)?;
    }
    // Last, so that nothing else competes for the cores while it runs.
    if run.opts.torch {
        run.torch(&jobs)?;
    }
    let table = summary(&run.records);
    println!("{table}");
    std::fs::write(out_path.with_extension("md"), &table)?;
    println!("{} lines in {} ({:.1} s)", run.records.len(), out_path.display(), start.elapsed().as_secs_f64());
    if run.opts.quick {
        let expected: Vec<(String, usize)> = run
            .ran
            .iter()
            .map(|(imp, dev, target)| (format!("{imp} on {dev}"), jobs.iter().filter(|j| j.target == *target).count()))
            .collect();
        check_file(&out_path, &expected).context("bench --quick: the output does not check out")?;
        println!("bench --quick: {} lines checked: every required field present and sane", run.records.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(imp: &str, target: &str, s: Option<f64>) -> Value {
        let mut r = json!({
            "impl": imp, "device": "Dev (x)", "config": "peaks-small", "date": "2026-11-27T00:00:00Z",
            "d": 2, "w": 8, "N": 64, "n": 65536, "C": 5, "flops_per_step": 1000, "target": target,
            "software": false, "peak_mem_bytes": 1, "param_state_bytes": 1, "work_bytes": 1,
        });
        match s {
            Some(s) => {
                r["s_per_step"] = json!(s);
                r["samples_per_s"] = json!(65536.0 / s);
                r["gflops"] = json!(1e-6 / s);
            }
            None => r["error"] = json!("capture failed"),
        }
        r
    }

    /// A CUDA-graph line is checked like torch.compile's (a failed capture is reported, not
    /// fatal) and gets its own ratio column; an eager failure is fatal.
    #[test]
    fn cudagraph_lines_check_and_compare() {
        assert!(check_record(&line("torch-cudagraph", "gpu", Some(0.004))).is_ok());
        assert!(check_record(&line("torch-cudagraph", "gpu", None)).is_ok());
        assert!(check_record(&line("torch-eager", "gpu", None)).is_err());
        assert!(check_record(&line("torch-graph", "gpu", Some(0.004))).is_err(), "unknown impl");
        let records = [
            line("stablenet-gpu", "gpu", Some(0.002)),
            line("torch-eager", "gpu", Some(0.030)),
            line("torch-cudagraph", "gpu", Some(0.008)),
        ];
        let table = summary(&records);
        let row = table.lines().find(|l| l.contains("| stablenet-gpu |")).expect("the engine's row");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // ... | / torch-eager | / torch-cudagraph | / torch-compile |
        assert_eq!(&cells[cells.len() - 4..cells.len() - 1], ["0.07", "0.25", ""], "{row}");
    }
}
