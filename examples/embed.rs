//! Embedding stablenet in a Rust program: generate a data set, train a Hamiltonian network on
//! the CPU, check its validation accuracy, save it and load it back.
use stablenet::data::Synthetic;
use stablenet::optim::OptimizerKind;
use stablenet::regularize::Regularizer;
use stablenet::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let split = Synthetic::Ellipses.generate(1);
    let cfg = ModelConfig {
        d: 2,
        width: 8,
        steps: 16,
        final_time: 5.0,
        integrator: Integrator::Hamiltonian,
        activation: Activation::Tanh,
        gamma: 0.0,
        classes: 2,
    };
    let epochs = 20;
    let tc = TrainConfig {
        epochs,
        batch_size: 64,
        optimizer: OptimizerKind::adam(0.01)?,
        regularizer: Regularizer::default(),
        seed: 3,
        method: None,
    };
    let mut trainer = Trainer::new(cfg.clone(), Params::<f32>::init(&cfg, 2), tc)?;
    let mut val_acc = 0.0;
    for _ in 0..epochs {
        let report = trainer.run_epoch(&split.train, Some(&split.val), |_, _, _| {})?;
        val_acc = report.val_acc.unwrap_or(0.0);
    }
    println!("validation accuracy after {epochs} epochs: {:.2}%", 100.0 * val_acc);

    let path = std::env::temp_dir().join(format!("stablenet-embed-{}.safetensors", std::process::id()));
    stablenet::io::save_model(&path, &cfg, &trainer.params, &[], &Default::default())?;
    let loaded = stablenet::io::load_model(&path)?;
    std::fs::remove_file(&path)?;
    assert_eq!(loaded.params, trainer.params, "a saved model loads back bit for bit");
    let e = stablenet::evaluate(&loaded.config, &loaded.params, &split.val.x, &split.val.labels)?;
    anyhow::ensure!(e.accuracy > 0.9, "embedded training reached only {:.2}%", 100.0 * e.accuracy);
    println!("reloaded model: validation loss {:.4}, accuracy {:.2}%", e.loss, 100.0 * e.accuracy);
    Ok(())
}
