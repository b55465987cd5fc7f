//! The `stablenet` command: train stable networks and check gradients against other tools.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod eval;
mod grad;
mod image;
mod inspect;
mod plot;
mod predict;
mod reproduce;
mod stability;
mod train;

#[derive(Parser)]
#[command(name = "stablenet", version, about = "Stable ODE-inspired deep networks (Haber & Ruthotto 2018)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Gradient of the mean cross-entropy of a model on a batch, written as safetensors
    /// (the same tensor names as the model, plus `loss`).
    Grad(grad::GradArgs),
    /// Train a network (a 2-D set, a data file, MNIST or Fashion-MNIST) and write the model.
    // Negative numbers as values (`--final-time -1`), so that their error names the option.
    #[command(allow_negative_numbers = true)]
    Train(Box<train::TrainArgs>),
    /// Loss and accuracy of a model on a data set.
    Eval(eval::EvalArgs),
    /// Labels and class probabilities for new inputs (CSV or safetensors).
    Predict(predict::PredictArgs),
    /// Pictures: decision regions, features flowing through the steps, training curves.
    Plot(plot::PlotArgs),
    /// Run every experiment in experiments/: models, metrics, pictures and a results table.
    Reproduce(reproduce::ReproduceArgs),
    /// Per-step stability diagnostics of a model (MODEL.md section 7).
    Inspect(inspect::InspectArgs),
    /// Gradient norms and forward sensitivity against depth for every integrator.
    Stability(stability::StabilityArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// A hardware GPU when there is one, otherwise the CPU.
    Auto,
    Cpu,
    Gpu,
}

#[derive(Args, Clone, Debug)]
pub struct BackendArg {
    /// Where to compute: auto picks a hardware GPU when there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// GPU adapter whose name contains this (case-insensitive); also STABLENET_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Use the software (fallback) adapter, e.g. lavapipe; also STABLENET_FALLBACK=1.
    #[arg(long)]
    pub fallback: bool,
}

/// The backend a command runs on.
pub enum Chosen {
    Cpu,
    Gpu(Box<stablenet_gpu::Gpu>),
}

impl BackendArg {
    /// `gpu` (or `--device`/`--fallback`) opens the requested adapter or fails saying why;
    /// `auto` uses a hardware GPU when there is one and the CPU otherwise.
    pub fn resolve(&self) -> Result<Chosen> {
        let req = stablenet_gpu::DeviceRequest { name: self.device.clone(), fallback: self.fallback }.with_env();
        let wants_gpu = match self.backend {
            Backend::Cpu => false,
            Backend::Gpu => true,
            Backend::Auto => req.name.is_some() || req.fallback || stablenet_gpu::device::hardware_available(),
        };
        if !wants_gpu {
            eprintln!("backend: CPU reference");
            return Ok(Chosen::Cpu);
        }
        let gpu = stablenet_gpu::Gpu::new(&req).context("opening the GPU backend")?;
        eprintln!("backend: GPU {}", gpu.describe());
        Ok(Chosen::Gpu(Box::new(gpu)))
    }
}

pub fn ensure_parent(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => ensure_dir(dir),
        None => Ok(()),
    }
}

/// Creates a folder and its parents; one of them that is a file is named as such (the bare
/// error was "File exists").
pub fn ensure_dir(dir: &std::path::Path) -> Result<()> {
    if let Some(file) = dir.ancestors().find(|a| a.is_file()) {
        anyhow::bail!("{} is a file, not a folder: cannot write into {}", file.display(), dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes a command's result to standard output. A full disk or an unwritable file there is
/// an error saying so (print! panics on it); a closed pipe ends the process quietly (SIGPIPE).
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the result to standard output")
}

/// Checks, before any work, the files a command will write: none is a folder, none is one of
/// its inputs (writing it would destroy the input) and no two are the same file.
pub fn check_outputs(outputs: &[&std::path::Path], inputs: &[&std::path::Path]) -> Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        // Not written yet: compare where they would go.
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    };
    for (k, out) in outputs.iter().enumerate() {
        anyhow::ensure!(!out.is_dir(), "{} is a folder; give the name of a file to write", out.display());
        if let Some(i) = inputs.iter().find(|i| same(out, i)) {
            anyhow::bail!(
                "{} is both an input and an output of this command: writing it would destroy the input",
                i.display()
            );
        }
        if let Some(o) = outputs[..k].iter().find(|o| same(out, o)) {
            anyhow::bail!("{} would be written twice, as two different outputs; give each its own file", o.display());
        }
    }
    Ok(())
}

fn main() {
    // Rust ignores SIGPIPE, which turns a closed pipe (`stablenet eval | head`) into a panic;
    // a command-line tool should just stop.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = dispatch(cli.command);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Runs one command (also used by `reproduce` to draw its pictures with the plot commands).
pub(crate) fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Grad(a) => grad::run(a),
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Stability(a) => stability::run(a),
    }
}
