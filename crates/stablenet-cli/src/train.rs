//! `stablenet train`: train on a generated 2-D data set (MODEL.md section 8) on the CPU,
//! report training and validation accuracy, write the model.
use crate::grad::parse_method;
use crate::{BackendArg, Chosen};
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stablenet_core::data::Synthetic;
use stablenet_core::io::{Tensor, save_model};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Backend, GradMethod, Integrator, ModelConfig, Params, TrainConfig, Trainer};
use stablenet_gpu::GpuTrainer;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set: peaks, ellipses or swiss-roll.
    #[arg(long, default_value = "peaks")]
    data: Synthetic,
    /// resnet, antisym, hamiltonian or leapfrog.
    #[arg(long, default_value = "hamiltonian")]
    integrator: Integrator,
    #[arg(long, default_value_t = 8)]
    width: usize,
    /// Number of steps N (h = T / N).
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Final time T.
    #[arg(long, default_value_t = 5.0)]
    final_time: f64,
    /// tanh or relu.
    #[arg(long, default_value = "tanh")]
    activation: Activation,
    /// Damping of the antisymmetric operator.
    #[arg(long, default_value_t = 0.05)]
    gamma: f64,
    /// Passes over the training set (default: per data set, see `default_schedule`).
    #[arg(long)]
    epochs: Option<usize>,
    /// Examples per optimiser step (default: per data set).
    #[arg(long)]
    batch_size: Option<usize>,
    /// adam or sgd.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Momentum (sgd only).
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Weight of the smoothness-in-time regulariser (MODEL.md section 5).
    #[arg(long, default_value_t = 0.0)]
    alpha_t: f64,
    /// Weight decay (MODEL.md section 5).
    #[arg(long, default_value_t = 0.0)]
    alpha_w: f64,
    /// Gradient method: stored, reverse, checkpoint:K (default: the integrator's own).
    #[arg(long, value_parser = parse_method)]
    method: Option<GradMethod>,
    /// Seeds the data, the initialisation and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the trained model.
    #[arg(long, default_value = "out/model.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let chosen = a.backend.resolve()?;
    let split = a.data.generate(a.seed);
    let (epochs, batch_size) = stablenet_core::train::default_schedule(a.data);
    let (epochs, batch_size) = (a.epochs.unwrap_or(epochs), a.batch_size.unwrap_or(batch_size));
    let cfg = ModelConfig {
        d: split.train.d,
        width: a.width,
        steps: a.steps,
        final_time: a.final_time,
        integrator: a.integrator,
        activation: a.activation,
        gamma: if a.integrator == Integrator::Antisym { a.gamma } else { 0.0 },
        classes: split.train.classes,
    };
    cfg.validate()?;
    let optimizer = match a.optimizer.as_str() {
        "sgd" => OptimizerKind::sgd(a.lr, a.momentum)?,
        name => OptimizerKind::from_name(name, a.lr)?,
    };
    let tc = TrainConfig {
        epochs,
        batch_size,
        optimizer,
        regularizer: Regularizer::new(a.alpha_t, a.alpha_w)?,
        seed: a.seed.wrapping_add(2),
        method: a.method,
    };
    let params = Params::<f32>::init(&cfg, a.seed.wrapping_add(1));
    for w in stablenet_core::stability::warnings(&cfg, &params) {
        eprintln!("warning: {w}");
    }
    let mut cpu = None;
    let mut gpu = None;
    let trainer: &mut dyn Backend = match chosen {
        Chosen::Cpu => cpu.insert(Trainer::new(cfg.clone(), params, tc)?),
        Chosen::Gpu(g) => gpu.insert(GpuTrainer::new(*g, cfg.clone(), &params, tc, split.train.len())?),
    };
    eprintln!(
        "training {} (d {}, width {}, N {}, T {}, h {:.4}) on {} ({} train / {} validation) with {}",
        cfg.integrator,
        cfg.d,
        cfg.width,
        cfg.steps,
        cfg.final_time,
        cfg.h(),
        a.data,
        split.train.len(),
        split.val.len(),
        optimizer
    );
    let tty = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let mut last = None;
    for _ in 0..epochs {
        let bar = if tty {
            ProgressBar::new(split.train.len().div_ceil(batch_size) as u64).with_style(
                ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} batches")
                    .expect("static template")
                    .progress_chars("=> "),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix((trainer.epochs_done() + 1).to_string());
        let r = trainer.run_epoch(&split.train, Some(&split.val), &mut |done, _| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        eprintln!(
            "epoch {:>3}  loss {:.4}  train acc {:6.2}%  val loss {:.4}  val acc {:6.2}%  {:.2}s",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.val_loss.unwrap_or(f64::NAN),
            100.0 * r.val_acc.unwrap_or(f64::NAN),
            r.seconds
        );
        last = Some(r);
    }
    let params = trainer.params()?;
    let train_eval = stablenet_core::evaluate(&cfg, &params, &split.train.x, &split.train.labels)?;
    let r = last.expect("epochs >= 1");
    println!(
        "{} {} final: train acc {:.2}%  validation acc {:.2}%  ({} epochs, {:.1}s)",
        a.data,
        cfg.integrator,
        100.0 * train_eval.accuracy,
        100.0 * r.val_acc.unwrap_or(f64::NAN),
        r.epoch,
        start.elapsed().as_secs_f64()
    );
    crate::ensure_parent(&a.out)?;
    // Optimiser state travels with the model from the CPU backend; the GPU keeps its own.
    let extras: Vec<Tensor> = cpu
        .iter()
        .flat_map(|t| t.optimizer().state_tensors())
        .map(|(name, shape, data)| Tensor::new(name, shape, data))
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("optimizer".into(), optimizer.to_string());
    meta.insert("dataset".into(), a.data.to_string());
    meta.insert("epochs".into(), r.epoch.to_string());
    meta.insert("val_acc".into(), format!("{}", r.val_acc.unwrap_or(f64::NAN)));
    save_model(&a.out, &cfg, &params, &extras, &meta).context("writing the model")?;
    eprintln!("model written to {}", a.out.display());
    Ok(())
}
