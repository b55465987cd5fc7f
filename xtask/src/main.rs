//! Project tasks:
//! - `cargo xtask test`: the project's test command. Installs a Vulkan driver where none is
//!   (lavapipe, Debian's `mesa-vulkan-drivers`, when run as root) so the GPU tests have an
//!   adapter, then runs every test in release mode.
//! - `cargo xtask validate [--quick] [--device NAME] [--fallback]`: every WGSL module through
//!   naga, then every kernel against its CPU twin on a real adapter (error table), then 20
//!   training steps on GPU and CPU from the same start.
//! - `cargo xtask accuracy [EPOCHS]`: trains every integrator on every 2-D data set with the
//!   CLI's defaults and prints the README's accuracy table (markdown).
mod data;

use anyhow::{Result, bail};
use stablenet_core::data::Synthetic;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("data") => data::data(&args[1..]),
        Some("accuracy") => accuracy(args.get(1).map(|s| s.parse()).transpose()?),
        Some("validate") => validate(&args[1..]),
        Some("test") => test(&args[1..]),
        _ => bail!(
            "usage: cargo xtask test [CARGO TEST ARGS]\n       \
             cargo xtask validate [--quick] [--device NAME] [--fallback]\n       \
             cargo xtask accuracy [EPOCHS]  (default: the CLI's per-data-set schedule)"
        ),
    }
}

/// The same settings as `stablenet train --data D --integrator I` (seed 1).
fn accuracy(epochs: Option<usize>) -> Result<()> {
    println!("| data set | integrator | train acc | validation acc | seconds |");
    println!("|---|---|---|---|---|");
    for data in Synthetic::ALL {
        let split = data.generate(1);
        let (default_epochs, batch_size) = stablenet_core::train::default_schedule(data);
        let epochs = epochs.unwrap_or(default_epochs);
        for integrator in Integrator::ALL {
            let cfg = ModelConfig {
                d: split.train.d,
                width: 8,
                steps: 16,
                final_time: 5.0,
                integrator,
                activation: Activation::Tanh,
                gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
                classes: split.train.classes,
            };
            let tc = TrainConfig {
                epochs,
                batch_size,
                optimizer: OptimizerKind::adam(0.01)?,
                regularizer: Regularizer::default(),
                seed: 3,
                method: None,
            };
            let start = std::time::Instant::now();
            let mut t = Trainer::new(cfg.clone(), Params::<f32>::init(&cfg, 2), tc)?;
            let mut last = None;
            for _ in 0..epochs {
                last = Some(t.run_epoch(&split.train, Some(&split.val), |_, _, _| true)?);
            }
            let train = stablenet_core::evaluate(&cfg, &t.params, &split.train.x, &split.train.labels)?;
            let val = last.and_then(|r| r.val_acc).unwrap_or(f64::NAN);
            println!(
                "| {data} | {integrator} | {:.2}% | {:.2}% | {:.1} |",
                100.0 * train.accuracy,
                100.0 * val,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// (a) naga parses and validates every module; (b) kernels against CPU twins; (c) training.
fn validate(args: &[String]) -> Result<()> {
    let mut req = stablenet_gpu::DeviceRequest::default();
    let mut quick = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--fallback" => req.fallback = true,
            "--device" => req.name = it.next().cloned(),
            other => bail!("validate: unknown option {other}"),
        }
    }
    let req = req.with_env();
    println!("## naga: parse and validate every WGSL module\n");
    for (name, src) in stablenet_gpu::shaders::all_modules() {
        let module =
            naga::front::wgsl::parse_str(&src).map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(&src)))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(&src)))?;
        let entries: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        println!("- {name}: ok ({})", entries.join(", "));
    }
    let gpu = stablenet_gpu::Gpu::new(&req)?;
    println!("\n## kernels against their CPU twins (f64) on {}\n", gpu.describe());
    drop(gpu);
    let start = std::time::Instant::now();
    let rows = stablenet_gpu::validate::run(&req, quick)?;
    println!("{}", stablenet_gpu::validate::table(&rows));
    let failed = rows.iter().filter(|r| !r.ok()).count();
    println!("{} checks, {failed} beyond tolerance, {:.1}s", rows.len(), start.elapsed().as_secs_f64());
    if failed > 0 {
        bail!("{failed} kernel checks beyond tolerance");
    }
    Ok(())
}

fn has_vulkan_driver() -> bool {
    let loader = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libvulkan.so.1"))
        .unwrap_or(false);
    let icd = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")));
    loader && icd
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new(program).args(args).status()?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Set-up (a Vulkan driver for the GPU tests), then `cargo test --release --workspace`.
fn test(args: &[String]) -> Result<()> {
    if cfg!(target_os = "linux") && !has_vulkan_driver() {
        let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        let apt = std::path::Path::new("/usr/bin/apt-get").exists();
        if root && apt {
            eprintln!("xtask test: no Vulkan driver; installing lavapipe (mesa-vulkan-drivers)");
            sh("apt-get", &["update", "-qq"])?;
            sh("apt-get", &["install", "-y", "-qq", "--no-install-recommends", "mesa-vulkan-drivers", "libvulkan1"])?;
        } else {
            eprintln!(
                "xtask test: no Vulkan driver found; the GPU tests will fail. On Debian: \
                 sudo apt-get install mesa-vulkan-drivers"
            );
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["test", "--release", "--workspace"]).args(args);
    let status = cmd.status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
