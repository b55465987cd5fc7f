//! The `stablenet` command: train stable networks and check gradients against other tools.
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod grad;
mod train;

#[derive(Parser)]
#[command(name = "stablenet", version, about = "Stable ODE-inspired deep networks (Haber & Ruthotto 2018)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Gradient of the mean cross-entropy of a model on a batch, written as safetensors
    /// (the same tensor names as the model, plus `loss`).
    Grad(grad::GradArgs),
    /// Train a network on a generated 2-D data set and write the model.
    Train(train::TrainArgs),
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
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

impl BackendArg {
    /// The CPU reference is the only backend of this build; `gpu` says so instead of
    /// silently falling back.
    pub fn resolve(&self) -> Result<Backend> {
        match self.backend {
            Backend::Gpu => {
                bail!("the GPU backend is not part of this build yet; use --backend cpu")
            }
            Backend::Auto | Backend::Cpu => Ok(Backend::Cpu),
        }
    }
}

pub fn ensure_parent(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Grad(a) => grad::run(a),
        Command::Train(a) => train::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
