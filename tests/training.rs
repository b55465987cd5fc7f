//! Training end to end on the CPU reference: every integrator learns every generated 2-D set,
//! runs are bit-reproducible, multi-level prolongation keeps a trained network's function,
//! and the time regulariser smooths the weights.
use stablenet::data::{Split, Synthetic};
use stablenet::multilevel::prolongate;
use stablenet::optim::OptimizerKind;
use stablenet::regularize::Regularizer;
use stablenet::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer, evaluate, logits};

fn cfg(split: &Split, integrator: Integrator, steps: usize) -> ModelConfig {
    ModelConfig {
        d: split.train.d,
        width: 8,
        steps,
        final_time: 5.0,
        integrator,
        activation: Activation::Tanh,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: split.train.classes,
    }
}

fn trainer(cfg: &ModelConfig, epochs: usize, batch: usize, reg: Regularizer) -> Trainer<f32> {
    let tc = TrainConfig {
        epochs,
        batch_size: batch,
        optimizer: OptimizerKind::adam(0.01).unwrap(),
        regularizer: reg,
        seed: 3,
        method: None,
    };
    Trainer::new(cfg.clone(), Params::init(cfg, 2), tc).unwrap()
}

fn train(split: &Split, t: &mut Trainer<f32>, epochs: usize) -> f64 {
    let mut acc = 0.0;
    for _ in 0..epochs {
        acc = t.run_epoch(&split.train, Some(&split.val), |_, _, _| true).unwrap().val_acc.unwrap();
    }
    acc
}

/// Short schedules (CI time); the README's table has the full ones.
#[test]
fn every_integrator_learns_every_2d_set() {
    for (data, epochs, batch, want) in
        [(Synthetic::Ellipses, 10, 64, 0.95), (Synthetic::Peaks, 12, 64, 0.85), (Synthetic::SwissRoll, 150, 16, 0.85)]
    {
        let split = data.generate(1);
        for integrator in Integrator::ALL {
            let c = cfg(&split, integrator, 16);
            let mut t = trainer(&c, epochs, batch, Regularizer::default());
            let acc = train(&split, &mut t, epochs);
            println!("{data} {integrator}: validation accuracy {:.2}% after {epochs} epochs", 100.0 * acc);
            assert!(acc >= want, "{data} {integrator}: {acc} < {want}");
        }
    }
}

#[test]
fn same_seed_gives_bit_identical_models() {
    let split = Synthetic::Peaks.generate(5);
    for integrator in Integrator::ALL {
        let c = cfg(&split, integrator, 8);
        let run = || {
            let mut t = trainer(&c, 2, 128, Regularizer { alpha_t: 1e-3, alpha_w: 1e-4 });
            train(&split, &mut t, 2);
            t.params
        };
        let (a, b) = (run(), run());
        let bits =
            |p: &Params<f32>| p.groups().iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{integrator}");
    }
}

/// Multi-level training (MODEL.md section 6): a network trained at N steps, prolongated to 2N
/// at h/2, computes nearly the same function (a finer discretisation of the same ODE), and
/// training continues from there.
#[test]
fn prolongation_keeps_the_trained_function() {
    let split = Synthetic::Ellipses.generate(2);
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog, Integrator::Antisym] {
        let c4 = cfg(&split, integrator, 16);
        let mut t = trainer(&c4, 10, 64, Regularizer { alpha_t: 1e-1, alpha_w: 0.0 });
        train(&split, &mut t, 10);
        let before = evaluate(&c4, &t.params, &split.val.x, &split.val.labels).unwrap();
        let (c8, p8) = prolongate(&c4, &t.params).unwrap();
        assert_eq!((c8.steps, c8.final_time), (32, c4.final_time));
        let after = evaluate(&c8, &p8, &split.val.x, &split.val.labels).unwrap();
        let (z4, z8) = (logits(&c4, &t.params, &split.val.x).unwrap(), logits(&c8, &p8, &split.val.x).unwrap());
        let rel = z4.iter().zip(&z8).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
            / z4.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("{integrator}: val acc {:.4} -> {:.4}, logits change {rel:.3}", before.accuracy, after.accuracy);
        assert!(rel < 0.25, "{integrator}: prolongation changed the logits by {rel}");
        assert!(after.accuracy >= before.accuracy - 0.03, "{integrator}: {before:?} -> {after:?}");
        let mut t8 = trainer(&c8, 5, 64, Regularizer { alpha_t: 1e-1, alpha_w: 0.0 });
        t8.params = p8;
        t8.optimizer_mut().set_lr(0.002).unwrap(); // the finer level starts near a minimum
        let cont = train(&split, &mut t8, 5);
        println!("{integrator}: after 5 more epochs at N = 32: {cont:.4}");
        assert!(cont >= 0.95, "{integrator}: continued training reached only {cont}");
    }
}

/// The smoothness-in-time regulariser (MODEL.md section 5) makes neighbouring steps alike.
#[test]
fn time_regulariser_smooths_the_weights() {
    let split = Synthetic::Peaks.generate(1);
    let c = cfg(&split, Integrator::Hamiltonian, 16);
    let roughness = |alpha_t: f64| {
        let mut t = trainer(&c, 3, 64, Regularizer { alpha_t, alpha_w: 0.0 });
        train(&split, &mut t, 3);
        Regularizer { alpha_t: 1.0, alpha_w: 0.0 }.value(&t.params, c.h())
    };
    let (free, smooth) = (roughness(0.0), roughness(1.0));
    println!("time roughness: alpha_t = 0: {free:.4}, alpha_t = 1: {smooth:.4}");
    assert!(smooth < 0.5 * free, "alpha_t = 1 must smooth the weights: {smooth} vs {free}");
}
