//! Project tasks: `cargo xtask accuracy` trains every integrator on every 2-D data set with the
//! CLI's defaults and prints the README's accuracy table (markdown).
use anyhow::{Result, bail};
use stablenet_core::data::Synthetic;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("accuracy") => accuracy(args.get(1).map(|s| s.parse()).transpose()?),
        _ => bail!("usage: cargo xtask accuracy [EPOCHS]  (default: the CLI's per-data-set schedule)"),
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
                last = Some(t.run_epoch(&split.train, Some(&split.val), |_, _, _| {})?);
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
