//! Training on the GPU (lavapipe in CI): the same steps as the CPU reference from the same
//! start, bit-identical reruns, real learning, and activation memory flat in depth.
use stablenet_core::backend::Backend;
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer};
use stablenet_gpu::{DeviceRequest, Gpu, GpuNet, GpuTrainer};

fn gpu() -> Gpu {
    Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)")
}

fn cfg(integrator: Integrator, steps: usize, d: usize, classes: usize) -> ModelConfig {
    ModelConfig {
        d,
        width: 8,
        steps,
        final_time: 5.0,
        integrator,
        activation: Activation::Tanh,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes,
    }
}

fn tc(optimizer: OptimizerKind, batch: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: batch,
        optimizer,
        regularizer: Regularizer { alpha_t: 1e-3, alpha_w: 1e-4 },
        seed: 3,
        method: None,
    }
}

fn subset(d: &Dataset, n: usize) -> Dataset {
    d.subset(&(0..n).collect::<Vec<_>>())
}

fn rel(a: &Params<f32>, b: &Params<f32>) -> f64 {
    let (ga, gb) = (a.groups(), b.groups());
    let diff = ga.iter().zip(gb.iter()).flat_map(|((_, x), (_, y))| x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()));
    f64::from(diff.fold(0f32, f32::max) / b.max_abs())
}

/// 20 optimiser steps from the same start and in the same order on both backends.
#[test]
fn twenty_steps_match_the_cpu() {
    let split = Synthetic::Peaks.generate(1);
    let train = subset(&split.train, 640);
    for integrator in Integrator::ALL {
        for opt in [OptimizerKind::adam(0.01).unwrap(), OptimizerKind::sgd(0.1, 0.9).unwrap()] {
            let c = cfg(integrator, 6, 2, 5);
            let p0 = Params::<f32>::init(&c, 2);
            let mut cpu = Trainer::new(c.clone(), p0.clone(), tc(opt, 32)).unwrap();
            let mut gpu = GpuTrainer::new(gpu(), c.clone(), &p0, tc(opt, 32), train.len()).unwrap();
            let rc = Backend::run_epoch(&mut cpu, &train, None, &mut |_, _| {}).unwrap();
            let rg = gpu.run_epoch(&train, None, &mut |_, _| {}).unwrap();
            assert_eq!((rc.steps, rg.steps), (20, 20));
            let (pc, pg) = (Backend::params(&cpu).unwrap(), gpu.params().unwrap());
            let perr = rel(&pg, &pc);
            let lerr = (rg.train_loss - rc.train_loss).abs() / rc.train_loss;
            println!(
                "{integrator:<12} {}: loss cpu {:.6} gpu {:.6} (rel {lerr:.1e}), acc cpu {:.4} gpu {:.4}, params rel {perr:.1e}",
                opt.name(),
                rc.train_loss,
                rg.train_loss,
                rc.train_acc,
                rg.train_acc
            );
            assert!(lerr < 1e-5, "{integrator} {}: loss {} vs {}", opt.name(), rg.train_loss, rc.train_loss);
            assert!(perr < 1e-5, "{integrator} {}: parameters differ by {perr}", opt.name());
            assert!(
                (rg.train_acc - rc.train_acc).abs() <= 2.0 / 640.0,
                "accuracy {} vs {}",
                rg.train_acc,
                rc.train_acc
            );
        }
    }
}

#[test]
fn same_seed_same_bits_and_it_learns() {
    let split = Synthetic::Ellipses.generate(1);
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog] {
        let c = cfg(integrator, 16, 2, 2);
        let p0 = Params::<f32>::init(&c, 2);
        let run = |epochs| {
            let mut t =
                GpuTrainer::new(gpu(), c.clone(), &p0, tc(OptimizerKind::adam(0.01).unwrap(), 64), split.train.len())
                    .unwrap();
            let mut last = None;
            for _ in 0..epochs {
                last = Some(t.run_epoch(&split.train, Some(&split.val), &mut |_, _| {}).unwrap());
            }
            (t.params().unwrap(), last.unwrap())
        };
        let (a, ra) = run(4);
        let (b, _) = run(4);
        let bits =
            |p: &Params<f32>| p.groups().iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
        assert!(bits(&a) == bits(&b), "{integrator}: two runs with the same seed differ");
        println!("{integrator}: validation accuracy {:.4} after 4 epochs on the GPU", ra.val_acc.unwrap());
        assert!(ra.val_acc.unwrap() > 0.95, "{integrator}: {ra:?}");
    }
}

/// MODEL.md section 3 on the device: the reversible integrators keep no state per step, so
/// the memory a step needs beyond the parameters does not grow with depth.
#[test]
fn device_memory_is_flat_in_depth_for_reversible_integrators() {
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog] {
        let bytes = |n| {
            let net = GpuNet::new(gpu(), &cfg(integrator, n, 2, 5), 1024, 1024, None).unwrap();
            net.work_bytes()
        };
        let (shallow, deep) = (bytes(16), bytes(4096));
        println!("{integrator}: device bytes beyond the parameters, N = 16: {shallow}, N = 4096: {deep}");
        assert!(deep as f64 <= 1.10 * shallow as f64, "{integrator}: {shallow} -> {deep}");
    }
    let euler = |n| GpuNet::new(gpu(), &cfg(Integrator::Resnet, n, 2, 5), 1024, 1024, None).unwrap().work_bytes();
    assert!(euler(256) > 8 * euler(16), "resnet stores its states: memory must grow with depth");
}
