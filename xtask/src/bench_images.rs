//! `cargo xtask bench-images`: time per training batch of the image network (docs/IMAGES.md)
//! on the CPU engine (or, with `--backend gpu`, the GPU engine) and in its PyTorch twin
//! (benches/pytorch/image_bench.py, on CUDA beside the GPU engine), same machine, same run, same
//! network and batch size; JSON lines plus a markdown table under benches/results/. Real MNIST
//! batches when `data/` has them, random images otherwise (the time of a step does not depend
//! on the pixel values).
use super::bench::{cores, cpu_model, find_python, host, now_utc, results_path, root};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use stablenet_core::data::{Dataset, ImageSet, ImageSplit, load_image_set};
use stablenet_core::image::{ImageConfig, ImageParams, ImageTrainer, Shape};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::{Activation, Integrator, Rng};
use stablenet_gpu::{DeviceRequest, Gpu, GpuImageTrainer};
use std::io::Write;
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask bench-images [--backend cpu|gpu] [--channels 16,32,64] [--steps 2] \
    [--batch 128] [--batches K] [--integrators a,b] [--threads T] [--no-torch] [--compile] [--python PATH] \
    [--out FILE]";

struct Opts {
    gpu: bool,
    compile: bool,
    channels: Vec<usize>,
    steps: usize,
    batch: usize,
    batches: usize,
    integrators: Vec<Integrator>,
    threads: usize,
    torch: bool,
    python: Option<String>,
    out: Option<std::path::PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        gpu: false,
        compile: false,
        channels: vec![16, 32, 64],
        steps: 2,
        batch: 128,
        batches: 10,
        integrators: vec![Integrator::Hamiltonian, Integrator::Leapfrog],
        threads: 2,
        torch: true,
        python: None,
        out: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        let list = |v: &str| -> Result<Vec<usize>> { v.split(',').map(|c| Ok(c.trim().parse()?)).collect() };
        match a.as_str() {
            "--channels" => o.channels = list(val()?)?,
            "--steps" => o.steps = val()?.parse()?,
            "--batch" => o.batch = val()?.parse()?,
            "--batches" => o.batches = val()?.parse()?,
            "--threads" => o.threads = val()?.parse()?,
            "--integrators" => o.integrators = val()?.split(',').map(|s| s.parse()).collect::<Result<_, _>>()?,
            "--no-torch" => o.torch = false,
            "--compile" => o.compile = true,
            "--backend" => {
                o.gpu = match val()?.as_str() {
                    "cpu" => false,
                    "gpu" => true,
                    other => bail!("--backend {other}: cpu or gpu"),
                }
            }
            "--python" => o.python = Some(val()?.clone()),
            "--out" => o.out = Some(val()?.into()),
            _ => bail!("unknown argument {a}\n{USAGE}"),
        }
    }
    if o.batches == 0 || o.batch == 0 {
        bail!("--batch and --batches must be at least 1");
    }
    Ok(o)
}

fn images(n: usize) -> (Dataset, &'static str) {
    match load_image_set(&root().join("data"), ImageSet::Mnist, ImageSplit::Train) {
        Ok(d) => (d, "mnist"),
        Err(_) => {
            let mut rng = Rng::new(1);
            let x = (0..n * 784).map(|_| rng.uniform() as f32).collect();
            let labels = (0..n as u32).map(|i| i % 10).collect();
            (Dataset { x, labels, d: 784, classes: 10 }, "random")
        }
    }
}

/// Seconds per batch of the CPU engine: one warm-up batch, then the median of `batches`.
/// The GPU engine: one warm-up epoch over `batches` batches (upload, pipelines), then the same
/// epoch timed, as training runs it (one submit per batch, one readback at the end).
fn engine(o: &Opts, integrator: Integrator, data: &Dataset) -> Result<Value> {
    let cfg = ImageConfig {
        integrator,
        activation: Activation::Relu,
        input: Shape::new(1, 28, 28),
        channels: o.channels.clone(),
        steps: o.steps,
        final_time: 1.0,
        gamma: if integrator == Integrator::Antisym { 0.01 } else { 0.0 },
        classes: 10,
    };
    if o.gpu {
        return gpu_engine(o, &cfg, data);
    }
    let mut t = ImageTrainer::new(&cfg, ImageParams::init(&cfg, 1), OptimizerKind::adam(1e-3)?, o.batch, 1)?;
    t.threads = o.threads;
    let d = data.d;
    let mut times = Vec::new();
    for b in 0..=o.batches {
        let lo = (b * o.batch) % (data.len() - o.batch + 1);
        let start = Instant::now();
        t.step(&data.x[lo * d..(lo + o.batch) * d], &data.labels[lo..lo + o.batch])?;
        if b > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let s = times[times.len() / 2];
    Ok(json!({
        "engine": "stablenet-cpu", "device": format!("{} ({} threads)", cpu_model(), cores()), "threads": o.threads,
        "integrator": integrator.name(), "activation": "relu", "channels": o.channels, "steps": o.steps,
        "batch_size": o.batch, "batches": o.batches, "seconds_per_batch": s,
        "seconds_per_epoch_est": s * 60000.0 / o.batch as f64, "images_per_second": o.batch as f64 / s,
    }))
}

fn gpu_engine(o: &Opts, cfg: &ImageConfig, data: &Dataset) -> Result<Value> {
    let gpu = Gpu::new(&DeviceRequest::default().with_env())?;
    let device = gpu.describe();
    let params = ImageParams::init(cfg, 1);
    let mut t = GpuImageTrainer::new(&gpu, cfg, params, OptimizerKind::adam(1e-3)?, o.batch, 1)?;
    let n = o.batch * o.batches;
    anyhow::ensure!(
        n <= data.len(),
        "--batches {}: {} batches of {} need {n} images, there are {}",
        o.batches,
        o.batches,
        o.batch,
        data.len()
    );
    let train = Dataset { x: data.x[..n * data.d].to_vec(), labels: data.labels[..n].to_vec(), ..data.clone() };
    t.run_epoch(&train, None, |_, _, _| true)?;
    let start = Instant::now();
    let report = t.run_epoch(&train, None, |_, _, _| true)?;
    let s = start.elapsed().as_secs_f64() / o.batches as f64;
    Ok(json!({
        "engine": "stablenet-gpu", "device": device, "integrator": cfg.integrator.name(), "activation": "relu",
        "channels": o.channels, "steps": o.steps, "batch_size": o.batch, "batches": o.batches,
        "seconds_per_batch": s, "seconds_per_epoch_est": s * 60000.0 / o.batch as f64,
        "images_per_second": o.batch as f64 / s, "train_loss": report.train_loss,
    }))
}

fn torch(o: &Opts, python: &str, integrator: Integrator) -> Result<Option<Value>> {
    let list = o.channels.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(root().join("benches/pytorch/image_bench.py")).arg("--data-dir").arg(root().join("data"));
    cmd.args(["--integrator", integrator.name(), "--activation", "relu", "--channels", &list]);
    cmd.args(["--steps", &o.steps.to_string(), "--batch-size", &o.batch.to_string()]);
    let device = if o.gpu { "cuda" } else { "cpu" };
    cmd.args(["--max-batches", &o.batches.to_string(), "--threads", &o.threads.to_string(), "--device", device]);
    if o.compile {
        cmd.arg("--compile");
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().with_context(|| format!("running {python}"))?;
    let line = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).next_back();
    if !out.status.success() {
        // image_bench.py exits with 2 when the IDX files are missing; its own message says why otherwise.
        let hint = if out.status.code() == Some(2) { " (no MNIST under data/? run cargo xtask data)" } else { "" };
        eprintln!("bench-images: image_bench.py exited with {}{hint}", out.status);
    }
    Ok(line)
}

pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if cfg!(debug_assertions) {
        bail!("bench-images measures time: run it in release (cargo xtask bench-images, the alias builds release)");
    }
    let (data, source) = images(o.batch * (o.batches + 1));
    if data.len() < o.batch {
        bail!("{} images, fewer than one batch of {}", data.len(), o.batch);
    }
    let (date, stamp) = now_utc();
    let out = results_path(o.out.as_deref(), &format!("{date}-images-{}", host()))?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).with_context(|| format!("{}", out.display()))?);
    let python = if o.torch { find_python(o.python.as_deref()) } else { None };
    let engine_device = if o.gpu { "the GPU engine".to_owned() } else { format!("{} threads", o.threads) };
    let torch_mode = if o.compile { "torch.compile" } else { "eager" };
    let mut table = format!(
        "Image network, time per training batch ({} images, relu, channels {:?}, N = {} per stage, {engine_device}), \
         {}, {stamp}; engine images: {source}.\n\n| integrator | engine s/batch | PyTorch {torch_mode} s/batch | \
         speed-up | engine s/epoch (est.) |\n|---|---|---|---|---|\n",
        o.batch,
        o.channels,
        o.steps,
        cpu_model()
    );
    let mut last = None;
    for &integrator in &o.integrators {
        let e = engine(&o, integrator, &data)?;
        eprintln!("bench-images: engine {integrator}: {:.4} s/batch", e["seconds_per_batch"]);
        // Each line as it is known: a run cut by a time limit keeps what it measured.
        writeln!(file, "{e}")?;
        file.flush()?;
        let t = match &python {
            Some(p) => torch(&o, p, integrator)?,
            None => None,
        };
        if let Some(t) = &t {
            writeln!(file, "{t}")?;
            file.flush()?;
        }
        let es = e["seconds_per_batch"].as_f64().unwrap_or(f64::NAN);
        let ts = t.as_ref().and_then(|t| t["seconds_per_batch"].as_f64());
        table.push_str(&format!(
            "| {integrator} | {es:.4} | {} | {} | {:.0} |\n",
            ts.map_or("-".into(), |v| format!("{v:.4}")),
            ts.map_or("-".into(), |v| format!("{:.2}x", v / es)),
            e["seconds_per_epoch_est"].as_f64().unwrap_or(f64::NAN)
        ));
        last = Some(e);
    }
    file.flush()?;
    if let Some(e) = &last {
        table.push_str(&format!("\nEngine device: {}.\n", e["device"].as_str().unwrap_or("?")));
    }
    std::fs::write(out.with_extension("md"), &table)?;
    println!("{table}\nwritten to {}", out.display());
    Ok(())
}
