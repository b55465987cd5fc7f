//! Training on the GPU (lavapipe in CI): bit-identical reruns, real learning, and activation
//! memory flat in depth. (Agreement with the CPU trainer step by step: tests/validate.rs.)
use stablenet_core::backend::Backend;
use stablenet_core::data::Synthetic;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, TrainConfig};
use stablenet_gpu::{DeviceRequest, Gpu, GpuNet, GpuTrainer, Hyper, StepKernels};

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
                last = Some(t.run_epoch(&split.train, Some(&split.val), &mut |_, _| true).unwrap());
            }
            (t.params().unwrap(), last.unwrap())
        };
        let (a, ra) = run(8);
        let (b, _) = run(8);
        let bits =
            |p: &Params<f32>| p.groups().iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
        assert!(bits(&a) == bits(&b), "{integrator}: two runs with the same seed differ");
        println!("{integrator}: validation accuracy {:.4} after 8 epochs on the GPU", ra.val_acc.unwrap());
        assert!(ra.val_acc.unwrap() > 0.93, "{integrator}: {ra:?}");
    }
}

/// MODEL.md section 3 on the device: the reversible integrators keep no state per step, so
/// the memory a step needs beyond the parameters does not grow with depth.
#[test]
fn device_memory_is_flat_in_depth_for_reversible_integrators() {
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog] {
        let bytes = |n| GpuNet::new(gpu(), &cfg(integrator, n, 2, 5), 1024, 1024, None).unwrap().work_bytes();
        let shallow = bytes(16);
        for n in [64, 256, 1024, 4096] {
            let deep = bytes(n);
            println!("{integrator}: device bytes beyond the parameters, N = 16: {shallow}, N = {n}: {deep}");
            assert!(deep as f64 <= 1.10 * shallow as f64, "{integrator}: {shallow} -> {deep} at N = {n}");
        }
    }
    let euler = |n| GpuNet::new(gpu(), &cfg(Integrator::Resnet, n, 2, 5), 1024, 1024, None).unwrap().work_bytes();
    assert!(euler(256) > 8 * euler(16), "resnet stores its states: memory must grow with depth");
}

/// The default step kernels: fused blocks for narrow nets, tiles for wider ones; forcing
/// kernels a model cannot run says why instead of building kernels whose workgroup memory
/// would not hold their arrays.
#[test]
fn step_kernels_by_default_and_forced() {
    let kernels = |cfg: &ModelConfig, k| GpuNet::with_kernels(gpu(), cfg, 256, 256, None, k).map(|n| n.kernels());
    let narrow = cfg(Integrator::Hamiltonian, 40, 2, 5);
    assert_eq!(kernels(&narrow, None).unwrap(), StepKernels::Fused, "w = 8 should fuse on any adapter (16 KiB)");
    for k in [StepKernels::PerExample, StepKernels::Tiled] {
        assert_eq!(kernels(&narrow, Some(k)).unwrap(), k);
    }
    let wide = ModelConfig { width: 11, ..narrow.clone() };
    assert_eq!(kernels(&wide, None).unwrap(), StepKernels::Tiled);
    let err = kernels(&wide, Some(StepKernels::Fused)).expect_err("w = 11 cannot fuse");
    assert!(err.to_string().contains("w^2 + w <= 128"), "{err}");
    // lavapipe stops an invocation's loops after 65535 iterations: the per-example Verlet
    // adjoint at w = 128 would pass that and return wrong gradients.
    let widest = ModelConfig { width: 128, ..wide.clone() };
    if gpu().is_software() {
        let err = kernels(&widest, Some(StepKernels::PerExample)).expect_err("w = 128 per example on lavapipe");
        assert!(err.to_string().contains("software adapter"), "{err}");
    }
    assert_eq!(kernels(&widest, None).unwrap(), StepKernels::Tiled);
    let leap = ModelConfig { integrator: Integrator::Leapfrog, ..wide.clone() };
    assert_eq!(kernels(&leap, None).unwrap(), StepKernels::Tiled);
    let antisym = ModelConfig { integrator: Integrator::Antisym, ..wide };
    assert_eq!(kernels(&antisym, None).unwrap(), StepKernels::Tiled);
}

/// A profiled step is the same training step, its phases in separate passes: the parameters
/// after it are bit-identical to `train_step`'s, and every phase took some device time.
#[test]
fn profiled_step_is_the_same_step() {
    let hyper = Hyper { optimizer: OptimizerKind::sgd(0.1, 0.9).unwrap(), regularizer: Regularizer::default() };
    for width in [8, 12] {
        let model = ModelConfig { width, ..cfg(Integrator::Hamiltonian, 5, 2, 5) };
        let data = Synthetic::Peaks.generate(1).train.subset(&(0..300).collect::<Vec<_>>());
        let p0 = Params::<f32>::init(&model, 4);
        let net = || {
            let mut net = GpuNet::new(gpu(), &model, 300, 300, Some(hyper)).unwrap();
            net.set_params(&p0).unwrap();
            net.set_data(&data).unwrap();
            net
        };
        let (mut plain, mut profiled) = (net(), net());
        plain.train_step(0, 300, 0).unwrap();
        // lavapipe (CI) writes timestamps; an adapter that writes none has no profile to test.
        let Some(phases) = profiled.profile_step(0, 300, 0).unwrap() else {
            assert!(!profiled.gpu().timestamps, "timestamps were offered but no profile came back");
            eprintln!("this adapter writes no timestamps: nothing to compare");
            return;
        };
        assert_eq!(plain.params().unwrap().b, profiled.params().unwrap().b, "w = {width}");
        assert_eq!(plain.params().unwrap().k, profiled.params().unwrap().k, "w = {width}");
        assert_eq!(phases.len(), 5);
        assert!(phases.iter().all(|(_, s)| s.is_finite() && *s > 0.0), "{phases:?}");
    }
}

/// A confidently wrong prediction (the label's logit 200 below the other, its exponential 0
/// in f32) has a finite loss, the logit gap, as on the CPU; it once gave inf and stopped
/// training as "diverged".
#[test]
fn confidently_wrong_predictions_have_a_finite_loss() {
    let model = cfg(Integrator::Hamiltonian, 4, 2, 2);
    let mut p = Params::<f32>::init(&model, 1);
    p.wc.iter_mut().for_each(|v| *v = 0.0);
    p.mu = vec![0.0, 200.0];
    let data = stablenet_core::data::Dataset { x: vec![0.3, -0.2, 1.0, 0.5], labels: vec![0, 0], d: 2, classes: 2 };
    let mut net = GpuNet::new(gpu(), &model, 2, 2, None).unwrap();
    net.set_params(&p).unwrap();
    net.set_data(&data).unwrap();
    let (loss, grad) = net.loss_grad(0, 2).unwrap();
    assert!((loss - 200.0).abs() < 1e-3, "loss {loss}");
    assert_eq!(grad.mu, vec![-1.0, 1.0]);
}

/// A batch the network refuses is no optimiser step: Adam's step count (its bias correction)
/// stays, and the next accepted step matches a network that never saw the rejected batch. The
/// count once went up before the batch was checked.
#[test]
fn rejected_batches_leave_the_step_count() {
    let hyper = Hyper { optimizer: OptimizerKind::adam(0.01).unwrap(), regularizer: Regularizer::default() };
    let model = cfg(Integrator::Hamiltonian, 4, 2, 2);
    let data = Synthetic::Ellipses.generate(1).train.subset(&(0..8).collect::<Vec<_>>());
    let p0 = Params::<f32>::init(&model, 4);
    let net = || {
        let mut net = GpuNet::new(gpu(), &model, 8, 8, Some(hyper)).unwrap();
        net.set_params(&p0).unwrap();
        net.set_data(&data).unwrap();
        net
    };
    let (mut clean, mut rejected) = (net(), net());
    assert!(rejected.train_step(0, 9, 0).is_err(), "above the batch capacity");
    assert!(rejected.train_step(4, 8, 0).is_err(), "past the data set");
    assert!(rejected.profile_step(0, 9, 0).is_err() || !rejected.gpu().timestamps);
    assert_eq!(rejected.steps_taken(), 0);
    clean.train_step(0, 8, 0).unwrap();
    rejected.train_step(0, 8, 0).unwrap();
    assert_eq!(rejected.steps_taken(), 1);
    assert_eq!(clean.params().unwrap().k, rejected.params().unwrap().k);
}

/// A data set refilled in place (same address, same length) is another data set: the trainer
/// uploads it again, and ends where one given the two sets as separate vectors ends. Known by
/// address and length, the resident copy once trained the second epoch on the first set.
#[test]
fn a_data_set_refilled_in_place_is_uploaded_again() {
    let split = Synthetic::Ellipses.generate(1);
    let (first, second) =
        (split.train.subset(&(0..256).collect::<Vec<_>>()), split.train.subset(&(256..512).collect::<Vec<_>>()));
    let c = cfg(Integrator::Hamiltonian, 4, 2, 2);
    let p0 = Params::<f32>::init(&c, 2);
    let trainer = || GpuTrainer::new(gpu(), c.clone(), &p0, tc(OptimizerKind::adam(0.01).unwrap(), 64), 256).unwrap();
    let mut refilled = trainer();
    let mut data = first.clone();
    refilled.run_epoch(&data, None, &mut |_, _| true).unwrap();
    let at = data.x.as_ptr();
    data.x.copy_from_slice(&second.x);
    data.labels.copy_from_slice(&second.labels);
    assert_eq!(at, data.x.as_ptr());
    refilled.run_epoch(&data, None, &mut |_, _| true).unwrap();
    let mut separate = trainer();
    separate.run_epoch(&first, None, &mut |_, _| true).unwrap();
    separate.run_epoch(&second, None, &mut |_, _| true).unwrap();
    let (a, b) = (refilled.params().unwrap(), separate.params().unwrap());
    assert!(a.k == b.k && a.wc == b.wc, "the refilled data set trained as the old one");
}

/// The CPU trainer's answers to misuse, on the device: a rate of 0 is an error and the rate is
/// kept; a position past the epoch's end and an empty validation set are errors before any
/// batch trains; NaN parameters and impossible gradient methods are refused at construction.
#[test]
fn misuse_is_an_error_on_the_device_too() {
    let model = cfg(Integrator::Hamiltonian, 4, 2, 2);
    let train = Synthetic::Ellipses.generate(1).train.subset(&(0..100).collect::<Vec<_>>());
    let p0 = Params::<f32>::init(&model, 1);
    let mut t = GpuTrainer::new(gpu(), model.clone(), &p0, tc(OptimizerKind::adam(0.01).unwrap(), 16), 100).unwrap();
    assert!(t.set_lr(0.0).is_err() && t.set_lr(f64::NAN).is_err());
    t.set_position(0, 8); // 7 batches of 16
    let err = t.run_epoch(&train, None, &mut |_, _| true).unwrap_err().to_string();
    assert!(err.contains("past the end of an epoch of 7 batches"), "{err}");
    t.set_position(0, 0);
    let empty = stablenet_core::data::Dataset { x: vec![], labels: vec![], d: 2, classes: 2 };
    let err = t.run_epoch(&train, Some(&empty), &mut |_, _| true).unwrap_err().to_string();
    assert!(err.contains("validation set is empty"), "{err}");
    assert_eq!(t.position(), (0, 0), "nothing trained");
    assert_eq!(t.params().unwrap(), p0, "nothing trained");
    let report = t.run_epoch(&train, None, &mut |_, _| true).unwrap();
    assert!(report.complete && (report.lr - 0.01).abs() < 1e-12, "the rate was kept: {report:?}");
    // Optimiser state: the round trip, and the CPU optimiser's checks (NaN, foreign tensors).
    let state = t.optimizer_state().unwrap();
    t.load_optimizer_state(&state).unwrap();
    let mut nan = state.clone();
    nan.iter_mut().find(|x| x.name == "optim.adam_v.classifier.bias").unwrap().data[0] = f32::NAN;
    assert!(t.load_optimizer_state(&nan).unwrap_err().to_string().contains("NaN"));
    let mut foreign = state.clone();
    foreign.push(stablenet_core::io::Tensor::new("optim.velocity.steps.bias", vec![4, 8], vec![0.0; 32]));
    assert!(t.load_optimizer_state(&foreign).unwrap_err().to_string().contains("unexpected tensor"));
    let mut bad = p0.clone();
    bad.k[3] = f32::INFINITY;
    let err = GpuTrainer::new(gpu(), model.clone(), &bad, tc(OptimizerKind::adam(0.01).unwrap(), 16), 100);
    assert!(err.err().unwrap().to_string().contains("steps.weight"));
    let resnet = cfg(Integrator::Resnet, 4, 2, 2);
    let reverse =
        TrainConfig { method: Some(stablenet_core::GradMethod::Reverse), ..tc(OptimizerKind::adam(0.01).unwrap(), 16) };
    assert!(GpuTrainer::new(gpu(), resnet.clone(), &Params::init(&resnet, 1), reverse, 100).is_err());
}

/// Kernel tuning (`GpuTrainer::tuned`) times every distinct plan the model and batch allow,
/// the default first, builds the trainer with the one it chose, and that trainer trains as
/// the default one does: the same data, order and updates, within the round-off of kernels
/// that sum in another order.
#[test]
fn tuned_kernels_train_as_the_default() {
    let split = Synthetic::Ellipses.generate(1);
    let train = split.train.subset(&(0..640).collect::<Vec<_>>());
    let c = ModelConfig { width: 16, ..cfg(Integrator::Hamiltonian, 8, 2, 2) };
    let p0 = Params::<f32>::init(&c, 2);
    let tc = tc(OptimizerKind::adam(0.01).unwrap(), 64);
    let (mut tuned, tuning) = GpuTrainer::tuned(gpu(), c.clone(), &p0, tc.clone(), train.len()).unwrap();
    eprintln!("{}", tuning.table());
    let settings: Vec<&str> = tuning.trials.iter().map(|t| t.setting.as_str()).collect();
    assert!(settings.len() >= 2, "w = 16 at n = 64: several tiled plans; {settings:?}");
    assert_eq!(settings[0], "tiled fblock=4,ablock=4,groups=256", "the default first");
    assert!(settings.iter().enumerate().all(|(i, s)| !settings[..i].contains(s)), "repeated: {settings:?}");
    for t in &tuning.trials {
        let s = t.seconds.as_ref().unwrap_or_else(|e| panic!("{}: {e}", t.setting));
        assert!(s.is_finite() && *s > 0.0, "{}: {s}", t.setting);
    }
    let chosen = &tuning.trials[tuning.chosen];
    assert!(tuning.table().contains(&format!("* {}", chosen.setting)), "{}", tuning.table());
    assert_eq!(tuned.net().kernel_sizes(), chosen.sizes, "the trainer runs what was timed");
    // Each setting tuning timed builds the same kernels again from its options (how a program
    // reuses a choice without tuning again), the ones not chosen too.
    for t in tuning.trials.iter().filter(|t| t.setting != chosen.setting) {
        let other = GpuTrainer::with_options(gpu(), c.clone(), &p0, tc.clone(), train.len(), t.options).unwrap();
        assert_eq!(other.net().kernel_sizes(), t.sizes, "{}", t.setting);
    }
    let mut default = GpuTrainer::new(gpu(), c, &p0, tc, train.len()).unwrap();
    for t in [&mut tuned, &mut default] {
        for _ in 0..2 {
            t.run_epoch(&train, None, &mut |_, _| true).unwrap();
        }
    }
    let (a, b) = (tuned.params().unwrap(), default.params().unwrap());
    let (mut diff, mut norm) = (0f64, 0f64);
    for ((_, x), (_, y)) in a.groups().iter().zip(b.groups().iter()) {
        for (x, y) in x.iter().zip(y.iter()) {
            diff += f64::from(x - y).powi(2);
            norm += f64::from(*y).powi(2);
        }
    }
    let rel = (diff / norm).sqrt();
    eprintln!("tuned ({}) against default after 20 Adam steps: {rel:.2e} relative", chosen.setting);
    assert!(rel < 1e-4, "{rel:e}");
}
