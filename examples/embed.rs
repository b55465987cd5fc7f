//! Embedding stablenet in a Rust program: train a Hamiltonian network on the CPU reference and,
//! where a GPU adapter exists, on the GPU too, through the one `Backend` trait; save the model
//! and load it back.
use stablenet::data::Synthetic;
use stablenet::gpu::{DeviceRequest, Gpu, GpuTrainer};
use stablenet::optim::OptimizerKind;
use stablenet::regularize::Regularizer;
use stablenet::{Activation, Backend, Integrator, ModelConfig, Params, TrainConfig, Trainer};

fn train(backend: &mut dyn Backend, split: &stablenet::data::Split, epochs: usize) -> anyhow::Result<f64> {
    let mut val_acc = 0.0;
    for _ in 0..epochs {
        let report = backend.run_epoch(&split.train, Some(&split.val), &mut |_, _| true)?;
        val_acc = report.val_acc.unwrap_or(0.0);
    }
    println!("{}: validation accuracy after {epochs} epochs: {:.2}%", backend.device(), 100.0 * val_acc);
    Ok(val_acc)
}

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
    let tc = TrainConfig {
        epochs: 20,
        batch_size: 64,
        optimizer: OptimizerKind::adam(0.01)?,
        regularizer: Regularizer::default(),
        seed: 3,
        method: None,
    };
    let init = Params::<f32>::init(&cfg, 2);

    let mut cpu = Trainer::new(cfg.clone(), init.clone(), tc.clone())?;
    let acc = train(&mut cpu, &split, 20)?;
    anyhow::ensure!(acc > 0.9, "CPU training reached only {:.2}%", 100.0 * acc);

    // The same run on a GPU (any adapter, lavapipe included), when there is one.
    match Gpu::new(&DeviceRequest::default().with_env()) {
        Ok(gpu) => {
            let mut g = GpuTrainer::new(gpu, cfg.clone(), &init, tc, split.train.len())?;
            let acc = train(&mut g, &split, 20)?;
            anyhow::ensure!(acc > 0.9, "GPU training reached only {:.2}%", 100.0 * acc);
        }
        Err(e) => println!("no GPU backend here ({e:#}); CPU only"),
    }

    let params = cpu.params()?;
    let path = std::env::temp_dir().join(format!("stablenet-embed-{}.safetensors", std::process::id()));
    stablenet::io::save_model(&path, &cfg, &params, &[], &Default::default())?;
    let loaded = stablenet::io::load_model(&path)?;
    std::fs::remove_file(&path)?;
    assert_eq!(loaded.params, params, "a saved model loads back bit for bit");
    let e = stablenet::evaluate(&loaded.config, &loaded.params, &split.val.x, &split.val.labels)?;
    println!("reloaded model: validation loss {:.4}, accuracy {:.2}%", e.loss, 100.0 * e.accuracy);
    Ok(())
}
