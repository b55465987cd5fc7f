//! GpuImageTrainer against the CPU ImageTrainer on the adapter that is there (lavapipe in CI):
//! the same initial parameters, batch order and optimiser give the same parameters after an
//! epoch of 10 steps (f32 on both sides), evaluation agrees, an interrupted epoch resumes to
//! the same bits, and the optimiser state crosses backends.
use stablenet_core::compare;
use stablenet_core::data::Dataset;
use stablenet_core::image::{ImageConfig, ImageParams, ImageTrainer, Shape};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::{Activation, Integrator, Rng};
use stablenet_gpu::{DeviceRequest, Gpu, GpuImageTrainer};

/// Relative tolerance on the parameters after 10 f32 steps (largest difference over the
/// largest parameter): SGD, and Adam on the entries whose gradient is not at round-off level
/// (Adam normalises each entry's step, so f32 differences in a small gradient and relu kinks
/// crossed on one side only show up at ~lr/100 after 10 steps; measured 4e-5).
fn tol(kind: OptimizerKind) -> f64 {
    if kind.name() == "adam" { 1e-4 } else { 1e-5 }
}

/// Bound on every entry's difference, in units of lr (the second number of [`agreement`]).
/// Measured on lavapipe: Adam 3.5e-2 lr after 10 steps (hamiltonian relu: an entry whose
/// gradient is at round-off level), 2.2e-2 lr after a state crossed backends; SGD 9e-7 lr
/// after 10 steps, 2.4e-6 lr after a crossing. About 7x and 4x the worst. Two Adam runs,
/// whatever their gradients, differ by at most 10 lr an entry in 10 steps: 20 lr checked nothing.
fn worst_tol(kind: OptimizerKind) -> f64 {
    if kind.name() == "adam" { 0.25 } else { 1e-5 }
}

/// Relative difference of each optimiser-state tensor (momenta, Adam's m and v) after 10
/// steps: measured at most 1.1e-5 on lavapipe (Adam's m of a bias), about 9x that.
const STATE_TOL: f64 = 1e-4;

/// (relative difference of the parameters, worst absolute difference over lr). Adam divides by
/// sqrt(v): an entry whose gradients are at round-off level (sqrt(v) below 1e-4 of the
/// largest; measured down to 1e-11 where the exact gradient is 0, and sums that cancel near
/// 1e-5) takes steps of up to lr whose size the round-off sets, on either side.
/// Those entries are left out of the first number; the second bounds every entry.
fn agreement(gpu: &[f32], cpu: &ImageTrainer) -> (f64, f64) {
    let state = cpu.optimizer_state();
    let mut v = Vec::new();
    for s in &cpu.params.slots {
        match state.iter().find(|t| t.name == format!("optim.adam_v.{}", s.name)) {
            Some(t) => v.extend_from_slice(&t.data),
            None => v.extend(std::iter::repeat_n(1.0, s.len)),
        }
    }
    let vmax = compare::max_abs(&v);
    let keep = |i: usize| f64::from(v[i]) > 1e-8 * vmax;
    let (a, b): (Vec<f32>, Vec<f32>) =
        (0..gpu.len()).filter(|&i| keep(i)).map(|i| (gpu[i], cpu.params.data[i])).unzip();
    // NaN-aware: a non-finite entry or a length mismatch is infinitely far.
    let worst = compare::max_abs_diff(gpu, &cpu.params.data);
    (rel(&a, &b), worst / cpu.lr())
}

fn cfg(integrator: Integrator, activation: Activation) -> ImageConfig {
    ImageConfig {
        integrator,
        activation,
        input: Shape::new(1, 8, 8),
        channels: vec![3, 4],
        steps: 3,
        final_time: 1.0,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: 4,
    }
}

/// 40 images whose class shifts the mean of one quadrant (learnable), on noise.
fn data(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let k = (i * 7 + 3) % 4;
        for r in 0..8 {
            for c in 0..8 {
                let quad = (r / 4) * 2 + c / 4;
                let v = 0.3 * rng.uniform() + if quad == k { 0.6 } else { 0.0 };
                x.push(v as f32);
            }
        }
        labels.push(k as u32);
    }
    Dataset { x, labels, d: 64, classes: 4 }
}

fn gpu() -> Gpu {
    Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)")
}

/// max |a - b| / max |b|, NaN-aware (a non-finite entry or a length mismatch is infinite).
fn rel(a: &[f32], b: &[f32]) -> f64 {
    compare::rel_error(a, b)
}

#[test]
fn gpu_image_training_matches_the_cpu_trainer() {
    let gpu = gpu();
    let train = data(40, 5);
    let val = data(12, 6);
    let cases = [
        (Integrator::Hamiltonian, Activation::Relu, OptimizerKind::adam(0.01).unwrap()),
        (Integrator::Resnet, Activation::Tanh, OptimizerKind::adam(0.01).unwrap()),
        (Integrator::Leapfrog, Activation::Tanh, OptimizerKind::sgd(0.1, 0.9).unwrap()),
        (Integrator::Antisym, Activation::Relu, OptimizerKind::sgd(0.1, 0.0).unwrap()),
    ];
    for (integrator, act, kind) in cases {
        let cfg = cfg(integrator, act);
        let p0 = ImageParams::<f32>::init(&cfg, 9);
        let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, 4, 17).unwrap();
        cpu.threads = 1;
        let mut dev = GpuImageTrainer::new(&gpu, &cfg, p0, kind, 4, 17).unwrap();
        let rc = cpu.run_epoch(&train, Some(&val), |_, _, _| true).unwrap();
        let rg = dev.run_epoch(&train, Some(&val), |_, _, _| true).unwrap();
        assert_eq!((rg.epoch, rg.steps, rg.complete), (1, 10, true));
        assert_eq!(dev.position(), cpu.position());
        let pg = dev.params().unwrap();
        let (err, worst) = agreement(&pg.data, &cpu);
        println!(
            "{integrator} {act} {}: 10 steps, params rel. diff {err:.2e} (worst entry {worst:.3e} lr); train loss {:.6} / {:.6}, val loss {:.6} / {:.6}",
            kind.name(),
            rg.train_loss,
            rc.train_loss,
            rg.val_loss.unwrap(),
            rc.val_loss.unwrap()
        );
        assert!(err < tol(kind), "{integrator} {act} {kind}: parameters differ by {err:.2e} (relative)");
        assert!(worst <= worst_tol(kind), "{integrator} {act} {kind}: an entry moved {worst:.2e} lr apart");
        assert!((rg.train_loss - rc.train_loss).abs() < 1e-4 * rc.train_loss.abs().max(1.0));
        assert_eq!(rg.train_acc, rc.train_acc);
        // Evaluation of the same parameters: loss to f32 round-off, the same predictions.
        let mut again = GpuImageTrainer::new(&gpu, &cfg, cpu.params.clone(), kind, 5, 1).unwrap();
        let (eg, ec) = (again.evaluate(&val).unwrap(), cpu.evaluate(&val).unwrap());
        assert!((eg.loss - ec.loss).abs() < 1e-5 * ec.loss.max(1.0), "{} vs {}", eg.loss, ec.loss);
        assert_eq!(eg.predictions, ec.predictions);
        assert_eq!(eg.accuracy, ec.accuracy);
        // Read back in parts (of a batch: 5, 5, 2 images), as a set beyond the device's largest
        // buffer is: the same figures, bit for bit.
        // Parts of one batch, of two (7 rounds up to 10: batches at 0 and 5 of a part, then 2
        // images), and one part for all.
        for part in [5, 7, 100] {
            let ep = again.evaluate_in_parts(&val, part).unwrap();
            assert_eq!((ep.loss, ep.accuracy, &ep.predictions), (eg.loss, eg.accuracy, &eg.predictions), "{part}");
        }
        // The optimiser state agrees too.
        let (sg, sc) = (dev.optimizer_state().unwrap(), cpu.optimizer_state());
        assert_eq!(sg.len(), sc.len());
        for (a, b) in sg.iter().zip(&sc) {
            assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
            let e = rel(&a.data, &b.data);
            assert!(e < STATE_TOL, "{integrator} {act} {kind}: {}: {e:.2e}", a.name);
        }
    }
}

/// An epoch stopped after 3 batches and continued ends with the same bits as one run through;
/// `step` (host batches, one readback) and `run_epoch` (resident data) agree.
#[test]
fn gpu_image_training_resumes_and_steps() {
    let gpu = gpu();
    let train = data(40, 7);
    let cfg = cfg(Integrator::Hamiltonian, Activation::Relu);
    let kind = OptimizerKind::adam(0.01).unwrap();
    let p0 = ImageParams::<f32>::init(&cfg, 3);
    let mut whole = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 8, 2).unwrap();
    let rw = whole.run_epoch(&train, None, |_, _, _| true).unwrap();
    let mut parts = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 8, 2).unwrap();
    let r = parts.run_epoch(&train, None, |b, _, _| b < 3).unwrap();
    assert!(!r.complete);
    assert_eq!(parts.position(), (0, 3));
    assert_eq!(parts.tally().seen, 24, "the stopped epoch's sums are kept");
    let r = parts.run_epoch(&train, None, |_, _, _| true).unwrap();
    assert!(r.complete && r.steps == 5);
    // The resumed epoch reports all 5 batches, to the bit, as the epoch run through.
    assert_eq!((r.train_loss, r.train_acc), (rw.train_loss, rw.train_acc));
    assert_eq!(parts.tally(), Default::default(), "a complete epoch leaves no sums behind");
    assert_eq!(whole.params().unwrap().data, parts.params().unwrap().data, "resumed epoch differs");

    let mut stepped = GpuImageTrainer::new(&gpu, &cfg, p0, kind, 8, 2).unwrap();
    let order = stablenet_core::train::epoch_order(2, 0, train.len());
    for b in order.chunks(8) {
        let x: Vec<f32> = b.iter().flat_map(|&i| train.sample(i as usize).to_vec()).collect();
        let l: Vec<u32> = b.iter().map(|&i| train.labels[i as usize]).collect();
        let (loss, correct) = stepped.step(&x, &l).unwrap();
        assert!(loss.is_finite() && correct <= b.len());
    }
    assert_eq!(whole.params().unwrap().data, stepped.params().unwrap().data, "step and run_epoch differ");
}

/// CPU optimiser state loaded on the GPU comes back bit for bit, and a GPU checkpoint
/// continued on the CPU (and a CPU checkpoint on the GPU) trains on as the other backend.
#[test]
fn optimizer_state_crosses_backends() {
    let gpu = gpu();
    let train = data(40, 8);
    let cfg = cfg(Integrator::Hamiltonian, Activation::Relu);
    for kind in [OptimizerKind::adam(0.01).unwrap(), OptimizerKind::sgd(0.05, 0.9).unwrap()] {
        let p0 = ImageParams::<f32>::init(&cfg, 4);
        let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, 4, 21).unwrap();
        cpu.threads = 1;
        cpu.run_epoch(&train, None, |_, _, _| true).unwrap();
        let state = cpu.optimizer_state();

        // CPU -> GPU, exact round trip.
        let mut dev = GpuImageTrainer::new(&gpu, &cfg, cpu.params.clone(), kind, 4, 21).unwrap();
        dev.load_optimizer_state(&state).unwrap();
        dev.set_position(1, 0);
        let back = dev.optimizer_state().unwrap();
        assert_eq!(back.len(), state.len());
        for (a, b) in back.iter().zip(&state) {
            assert_eq!((&a.name, &a.shape, &a.data), (&b.name, &b.shape, &b.data));
        }
        // Both continue one epoch from the same state.
        dev.run_epoch(&train, None, |_, _, _| true).unwrap();
        cpu.run_epoch(&train, None, |_, _, _| true).unwrap();
        let (err, worst) = agreement(&dev.params().unwrap().data, &cpu);
        println!(
            "{}: CPU state -> GPU, one more epoch: params rel. diff {err:.2e} (worst {worst:.2e} lr)",
            kind.name()
        );
        assert!(err < tol(kind), "{err:.2e}");
        assert!(worst <= worst_tol(kind), "an entry moved {worst:.2e} lr apart");
        assert_eq!(dev.steps_taken(), cpu.steps_taken());

        // GPU -> CPU.
        let mut cpu2 = ImageTrainer::new(&cfg, dev.params().unwrap(), kind, 4, 21).unwrap();
        cpu2.threads = 1;
        cpu2.load_optimizer_state(&dev.optimizer_state().unwrap()).unwrap();
        cpu2.set_position(2, 0);
        cpu2.run_epoch(&train, None, |_, _, _| true).unwrap();
        dev.run_epoch(&train, None, |_, _, _| true).unwrap();
        let (err, worst) = agreement(&dev.params().unwrap().data, &cpu2);
        println!(
            "{}: GPU state -> CPU, one more epoch: params rel. diff {err:.2e} (worst {worst:.2e} lr)",
            kind.name()
        );
        assert!(err < tol(kind), "{err:.2e}");
        assert!(worst <= worst_tol(kind), "an entry moved {worst:.2e} lr apart");

        // A state of the other optimiser is refused and changes nothing.
        let other = if kind.name() == "adam" { OptimizerKind::sgd(0.1, 0.0) } else { OptimizerKind::adam(0.1) };
        let mut wrong = GpuImageTrainer::new(&gpu, &cfg, cpu.params.clone(), other.unwrap(), 4, 21).unwrap();
        let before = wrong.optimizer_state().unwrap();
        assert!(wrong.load_optimizer_state(&state).is_err());
        assert_eq!(wrong.steps_taken(), 0);
        assert_eq!(wrong.params().unwrap().data, cpu.params.data, "the parameters are untouched");
        let after = wrong.optimizer_state().unwrap();
        assert_eq!(after.len(), before.len());
        assert!(
            after.iter().zip(&before).all(|(a, b)| a.name == b.name && a.data == b.data),
            "the optimiser state is untouched"
        );
    }
}

/// Images refilled in place (same address, same length) are another training set: uploaded
/// again, so the epoch ends where one on a separate vector ends. Known by address and length,
/// the resident images once stayed those of the first set.
#[test]
fn a_training_set_refilled_in_place_is_uploaded_again() {
    let gpu = gpu();
    let cfg = cfg(Integrator::Hamiltonian, Activation::Tanh);
    let kind = OptimizerKind::adam(0.01).unwrap();
    let p0 = ImageParams::<f32>::init(&cfg, 9);
    let (first, second) = (data(16, 5), data(16, 8));
    let mut refilled = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 4, 17).unwrap();
    let mut set = first.clone();
    refilled.run_epoch(&set, None, |_, _, _| true).unwrap();
    let at = set.x.as_ptr();
    set.x.copy_from_slice(&second.x);
    set.labels.copy_from_slice(&second.labels);
    assert_eq!(at, set.x.as_ptr());
    refilled.run_epoch(&set, None, |_, _, _| true).unwrap();
    let mut separate = GpuImageTrainer::new(&gpu, &cfg, p0, kind, 4, 17).unwrap();
    separate.run_epoch(&first, None, |_, _, _| true).unwrap();
    separate.run_epoch(&second, None, |_, _, _| true).unwrap();
    assert_eq!(refilled.params().unwrap().data, separate.params().unwrap().data, "trained on the stale images");
}
