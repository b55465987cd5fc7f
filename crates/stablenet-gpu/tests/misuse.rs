//! What goes wrong in training is an error that says what happened, on both backends: a run
//! that diverges (dense and image, CPU and GPU, by epoch and by single step), and training data
//! with a NaN on the GPU. Also the dense optimiser state crossing backends (a CPU checkpoint
//! resumed on the GPU and back).
use stablenet_core::backend::Backend;
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::image::{ImageConfig, ImageParams, ImageTrainer, Shape};
use stablenet_core::io::Tensor;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::train::epoch_order;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, Rng, TrainConfig, Trainer};
use stablenet_gpu::{DeviceRequest, Gpu, GpuImageTrainer, GpuTrainer};

fn gpu() -> Gpu {
    Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)")
}

fn dense(integrator: Integrator, activation: Activation, steps: usize, final_time: f64) -> ModelConfig {
    ModelConfig { d: 2, width: 4, steps, final_time, integrator, activation, gamma: 0.0, classes: 2 }
}

fn tc(optimizer: OptimizerKind, batch: usize) -> TrainConfig {
    TrainConfig { epochs: 1, batch_size: batch, optimizer, regularizer: Regularizer::default(), seed: 5, method: None }
}

/// 64 examples of both classes of the ellipses set (stored class by class): 4 batches of 16.
fn ellipses() -> Dataset {
    Synthetic::Ellipses.generate(1).train.subset(&(0..64).map(|i| 31 * i).collect::<Vec<_>>())
}

/// The batches of the first epoch in the trainers' order ([`epoch_order`]), so that steps one
/// at a time see what `run_epoch` sees.
fn first_epoch(data: &Dataset, seed: u64, batch: usize) -> Vec<Dataset> {
    let order: Vec<usize> = epoch_order(seed, 0, data.len()).into_iter().map(|i| i as usize).collect();
    order.chunks(batch).map(|b| data.subset(b)).collect()
}

/// Steps the first epoch's batches one at a time until one fails: (good steps, the error).
fn step_until_error(
    batches: &[Dataset],
    mut step: impl FnMut(&[f32], &[u32]) -> stablenet_core::Result<()>,
) -> Option<(usize, String)> {
    batches.iter().enumerate().find_map(|(k, b)| step(&b.x, &b.labels).err().map(|e| (k, e.to_string())))
}

/// The 1-based batch a GPU divergence error names ("..., batch 3: ...").
fn batch_named(err: &str) -> usize {
    let rest = &err[err.find(", batch ").unwrap_or_else(|| panic!("no batch in: {err}")) + 8..];
    rest[..rest.find(':').unwrap()].parse().unwrap()
}

/// A dense run that overflows is an error saying it diverged, by `run_epoch` and by `step`,
/// on the CPU and the GPU, at the same batch either way; the CPU keeps the last good
/// parameters and points at the failed batch.
#[test]
fn diverging_dense_training_is_an_error_on_both_backends() {
    let data = ellipses();
    // SGD with lr 1e3 on a relu resnet of 16 steps: the steps scale the weights by ~1e3, and
    // the features then grow like (h s)^N until they overflow f32, at the third batch on the
    // CPU (measured; a shallower net, or lr 100, trains on with a huge but finite loss).
    let cfg = ModelConfig { width: 8, ..dense(Integrator::Resnet, Activation::Relu, 16, 5.0) };
    let sgd = tc(OptimizerKind::sgd(1e3, 0.0).unwrap(), 16);
    // A huge final time in two steps: the features overflow in the very first forward pass,
    // whatever the learning rate.
    let wide_step = dense(Integrator::Resnet, Activation::Relu, 2, 1e25);
    let adam = tc(OptimizerKind::adam(0.01).unwrap(), 16);
    for (what, cfg, tc) in [("lr 1e3", &cfg, &sgd), ("T = 1e25, N = 2", &wide_step, &adam)] {
        let p0 = Params::<f32>::init(cfg, 3);
        let batches = first_epoch(&data, tc.seed, tc.batch_size);

        let mut cpu = Trainer::new(cfg.clone(), p0.clone(), tc.clone()).unwrap();
        let err = Trainer::run_epoch(&mut cpu, &data, None, |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("the training diverged"), "CPU run_epoch, {what}: {err}");
        // The step that met the non-finite objective did not update: the parameters are the last
        // good ones and the position points at the failed batch, so the run can be inspected.
        assert!(cpu.params.check_finite().is_ok(), "CPU, {what}: the failed step wrote NaN parameters");
        let (epoch, failed) = Trainer::position(&cpu);
        assert_eq!(epoch, 0, "{what}");
        assert_eq!(cpu.optimizer().steps_taken() as usize, failed, "{what}: one update per good batch");
        assert_eq!(failed > 0, cpu.params != p0, "{what}: the good batches trained");

        // One step at a time over the same batches: the same batch fails, with the same error.
        let mut cpu = Trainer::new(cfg.clone(), p0.clone(), tc.clone()).unwrap();
        let (ok, step_err) = step_until_error(&batches, |x, l| Backend::step(&mut cpu, x, l))
            .unwrap_or_else(|| panic!("CPU step, {what}: the epoch's batches trained"));
        assert!(step_err.contains("the training diverged"), "CPU step, {what}: {step_err}");
        assert_eq!((ok, cpu.optimizer().steps_taken() as usize), (failed, failed), "CPU step, {what}");

        // The GPU trainer checks the losses once per epoch and names the first bad batch.
        let mut dev = GpuTrainer::new(gpu(), cfg.clone(), &p0, tc.clone(), data.len()).unwrap();
        let err = dev.run_epoch(&data, None, &mut |_, _| true).unwrap_err().to_string();
        assert!(err.contains("the training diverged"), "GPU run_epoch, {what}: {err}");
        let gpu_batch = batch_named(&err);
        assert!((1..=batches.len()).contains(&gpu_batch), "GPU run_epoch, {what}: {err}");
        // As on the CPU, the epoch is not counted done: the position is the failed batch.
        assert_eq!(Backend::position(&dev), (0, gpu_batch - 1), "GPU run_epoch, {what}");

        // Backend::step reads each loss back: it fails at the batch run_epoch named.
        let mut dev = GpuTrainer::new(gpu(), cfg.clone(), &p0, tc.clone(), data.len()).unwrap();
        let (ok_gpu, err) = step_until_error(&batches, |x, l| dev.step(x, l))
            .unwrap_or_else(|| panic!("GPU step, {what}: the epoch's batches trained"));
        assert!(err.contains("the training diverged"), "GPU step, {what}: {err}");
        assert_eq!(ok_gpu + 1, gpu_batch, "GPU step, {what}: step and run_epoch fail at different batches");
        println!("{what}: the first non-finite batch is {} on the CPU, {gpu_batch} on the GPU", failed + 1);
    }
}

fn image_cfg(steps: usize, final_time: f64) -> ImageConfig {
    ImageConfig {
        integrator: Integrator::Resnet,
        activation: Activation::Relu,
        input: Shape::new(1, 8, 8),
        channels: vec![3, 4],
        steps,
        final_time,
        gamma: 0.0,
        classes: 4,
    }
}

/// n images of 8 x 8 in [0, 1), labels cycling through 4 classes.
fn images(n: usize) -> Dataset {
    let mut rng = Rng::new(11);
    let x = (0..n * 64).map(|_| rng.uniform() as f32).collect();
    Dataset { x, labels: (0..n as u32).map(|i| i % 4).collect(), d: 64, classes: 4 }
}

/// The same for the image trainers: an error saying it diverged from `run_epoch` and `step` on
/// both backends, at the same batch either way.
#[test]
fn diverging_image_training_is_an_error_on_both_backends() {
    let gpu = gpu();
    let data = images(16);
    // As for the dense nets: SGD with a large rate on a deep enough relu resnet (8 steps per
    // stage; with 2 or 4 steps even lr 1e6 trains on with a finite loss, measured), and a huge
    // final time that overflows in the first forward pass.
    let cases = [
        ("lr 100", image_cfg(8, 8.0), OptimizerKind::sgd(100.0, 0.0).unwrap()),
        ("T = 1e25", image_cfg(2, 1e25), OptimizerKind::adam(0.01).unwrap()),
    ];
    for (what, cfg, kind) in cases {
        let p0 = ImageParams::<f32>::init(&cfg, 2);
        let batches = first_epoch(&data, 1, 4);
        let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, 4, 1).unwrap();
        cpu.threads = 1;
        let err = cpu.run_epoch(&data, None, |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("the training diverged"), "CPU image run_epoch, {what}: {err}");
        assert!(cpu.params.data.iter().all(|v| v.is_finite()), "CPU image, {what}: NaN parameters kept");
        let (epoch, failed) = cpu.position();
        assert_eq!((epoch, cpu.steps_taken() as usize), (0, failed), "{what}: one update per good batch");

        let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, 4, 1).unwrap();
        cpu.threads = 1;
        let (ok, err) = step_until_error(&batches, |x, l| cpu.step(x, l).map(|_| ()))
            .unwrap_or_else(|| panic!("CPU image step, {what}: the epoch's batches trained"));
        assert!(err.contains("the training diverged"), "CPU image step, {what}: {err}");
        assert_eq!(ok, failed, "CPU image step, {what}: step and run_epoch fail at different batches");

        let mut dev = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 4, 1).unwrap();
        let err = dev.run_epoch(&data, None, |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("the training diverged"), "GPU image run_epoch, {what}: {err}");
        let gpu_batch = batch_named(&err);
        assert_eq!(dev.position(), (0, gpu_batch - 1), "GPU image run_epoch, {what}: at the batch that diverged");
        assert_eq!(dev.tally().seen as usize, 4 * (gpu_batch - 1), "GPU image, {what}: the good batches' sums");

        let mut dev = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 4, 1).unwrap();
        let (ok_gpu, err) = step_until_error(&batches, |x, l| dev.step(x, l).map(|_| ()))
            .unwrap_or_else(|| panic!("GPU image step, {what}: the epoch's batches trained"));
        assert!(err.contains("the training diverged"), "GPU image step, {what}: {err}");
        assert_eq!(ok_gpu + 1, gpu_batch, "GPU image step, {what}: step and run_epoch fail at different batches");
        println!("{what}: the first non-finite image batch is {} on the CPU, {gpu_batch} on the GPU", failed + 1);
    }
}

/// (largest difference over the largest magnitude) of two tensors; NaN-aware (a non-finite
/// entry or a length mismatch is infinitely far).
fn rel(a: &[f32], b: &[f32]) -> f64 {
    stablenet_core::compare::rel_error(a, b)
}

/// The tensors by name (the backends list them in different orders).
fn by_name(s: &[Tensor]) -> Vec<&Tensor> {
    let mut v: Vec<_> = s.iter().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn assert_same_bits(a: &[Tensor], b: &[Tensor], what: &str) {
    let (a, b) = (by_name(a), by_name(b));
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(&b) {
        let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!((&x.name, &x.shape), (&y.name, &y.shape), "{what}");
        assert!(bits(x) == bits(y), "{what}: {} changed", x.name);
    }
}

fn params_rel(a: &Params<f32>, b: &Params<f32>) -> f64 {
    stablenet_core::compare::worst_of_groups(
        a.groups().into_iter().map(|(_, x)| x).zip(b.groups().into_iter().map(|(_, y)| y)),
    )
    .1
}

/// Tolerance on the optimiser state after 8 steps from the same start, CPU against GPU, per
/// tensor relative to its largest entry: the gradients differ by f32 summation order (~1e-7
/// relative), and the moments are averages of them that do not amplify it. Measured at most
/// 5e-7 (Adam m, v, SGD velocity) on lavapipe; 1e-5 leaves 20x for other adapters and still
/// fails on a moment one step stale (Adam v moves by 1 - beta2 = 1e-3 of itself per step).
const STATE_TOL: f64 = 1e-5;
/// The parameters after 4 more steps from the exchanged state, relative per group: the same
/// f32 differences through the updates (measured at most 7e-7); a fresh optimiser instead
/// ends ~1 away.
const PARAMS_TOL: f64 = 1e-5;

/// A CPU checkpoint resumes on the GPU and a GPU one on the CPU: after the same steps the two
/// optimiser states agree (same tensors, the same step count, values to f32 round-off), a
/// state loaded into either backend reads back bit for bit, and training on from it goes
/// where the other backend goes, not where a fresh optimiser would.
#[test]
fn dense_optimizer_state_crosses_backends() {
    let data = ellipses();
    let cfg = dense(Integrator::Hamiltonian, Activation::Tanh, 4, 2.0);
    let p0 = Params::<f32>::init(&cfg, 7);
    for kind in [OptimizerKind::adam(0.01).unwrap(), OptimizerKind::sgd(0.05, 0.9).unwrap()] {
        let name = kind.name();
        let tc = TrainConfig { regularizer: Regularizer { alpha_t: 1e-3, alpha_w: 1e-4 }, ..tc(kind, 16) };
        let mut cpu = Trainer::new(cfg.clone(), p0.clone(), tc.clone()).unwrap();
        let mut dev = GpuTrainer::new(gpu(), cfg.clone(), &p0, tc.clone(), data.len()).unwrap();
        for _ in 0..2 {
            Backend::run_epoch(&mut cpu, &data, None, &mut |_, _| true).unwrap();
            dev.run_epoch(&data, None, &mut |_, _| true).unwrap();
        }
        let (sc, sg) = (Backend::optimizer_state(&cpu).unwrap(), dev.optimizer_state().unwrap());
        let (bc, bg) = (by_name(&sc), by_name(&sg));
        let names = |s: &[&Tensor]| s.iter().map(|t| (t.name.clone(), t.shape.clone())).collect::<Vec<_>>();
        assert_eq!(names(&bc), names(&bg), "{name}: the same tensors on both backends");
        let moments = if name == "adam" { 2 } else { 1 };
        let groups = stablenet_core::params::GROUP_NAMES.len();
        assert_eq!(bc.len(), 1 + moments * groups, "{name}: optim.t and a tensor per moment and group");
        for (a, b) in bc.iter().zip(&bg) {
            if a.name == "optim.t" {
                assert_eq!((&a.data, &b.data), (&vec![8.0], &vec![8.0]), "{name}: the step count");
                continue;
            }
            assert!(a.data.iter().any(|v| *v != 0.0), "{name}: {} is still zero after 8 steps", a.name);
            let e = rel(&b.data, &a.data);
            println!("{name} {}: GPU vs CPU after 8 steps {e:.2e}", a.name);
            assert!(e < STATE_TOL, "{name} {}: {e:.2e}", a.name);
        }

        // CPU state into the GPU trainer (with the CPU's parameters) and back out: the same bits.
        let mut from_cpu = GpuTrainer::new(gpu(), cfg.clone(), &cpu.params, tc.clone(), data.len()).unwrap();
        from_cpu.load_optimizer_state(&sc).unwrap();
        from_cpu.set_position(2, 0);
        assert_same_bits(&from_cpu.optimizer_state().unwrap(), &sc, "CPU -> GPU -> CPU");
        // GPU state into a CPU trainer and back out.
        let mut from_gpu = Trainer::new(cfg.clone(), dev.params().unwrap(), tc.clone()).unwrap();
        Backend::load_optimizer_state(&mut from_gpu, &sg).unwrap();
        from_gpu.set_position(2, 0);
        assert_same_bits(&Backend::optimizer_state(&from_gpu).unwrap(), &sg, "GPU -> CPU -> GPU");

        // The loaded state is the one the next steps use: the GPU goes on from the CPU's state
        // as the CPU does, and the CPU from the GPU's as the GPU does.
        let mut fresh = GpuTrainer::new(gpu(), cfg.clone(), &cpu.params, tc.clone(), data.len()).unwrap();
        fresh.set_position(2, 0);
        for t in [&mut cpu as &mut dyn Backend, &mut from_cpu, &mut dev, &mut from_gpu, &mut fresh] {
            t.run_epoch(&data, None, &mut |_, _| true).unwrap();
        }
        let (a, b) = (
            params_rel(&from_cpu.params().unwrap(), &cpu.params),
            params_rel(&from_gpu.params, &dev.params().unwrap()),
        );
        let off = params_rel(&fresh.params().unwrap(), &cpu.params);
        println!(
            "{name}: 4 steps on from the other backend's state: params {a:.2e}, {b:.2e}; fresh optimiser {off:.2e}"
        );
        assert!(a < PARAMS_TOL && b < PARAMS_TOL, "{name}: {a:.2e}, {b:.2e}");
        assert!(off > 1e-2, "{name}: a fresh optimiser went the same way ({off:.2e})");
    }
}

/// Training data with a NaN is refused on the GPU by name (sample and feature), before any
/// batch trains: by `run_epoch` (training or validation set) and by `Backend::step`. The
/// refused set is not left resident: a clean epoch after it ends where one on a fresh trainer
/// does.
#[test]
fn nan_training_data_is_refused_on_the_device() {
    let cfg = dense(Integrator::Hamiltonian, Activation::Tanh, 4, 2.0);
    let p0 = Params::<f32>::init(&cfg, 2);
    let tc = tc(OptimizerKind::adam(0.01).unwrap(), 16);
    let clean = ellipses();
    let mut nan = clean.clone();
    nan.x[2 * 37 + 1] = f32::NAN; // sample 37, feature 1
    let mut t = GpuTrainer::new(gpu(), cfg.clone(), &p0, tc.clone(), clean.len()).unwrap();
    let untouched = |t: &GpuTrainer| {
        assert_eq!(t.position(), (0, 0), "nothing trained");
        assert_eq!(t.params().unwrap(), p0, "nothing trained");
        let state = t.optimizer_state().unwrap();
        assert_eq!(state.iter().find(|s| s.name == "optim.t").unwrap().data, vec![0.0], "no optimiser step");
    };

    let err = t.run_epoch(&nan, None, &mut |_, _| true).unwrap_err().to_string();
    assert!(err.contains("sample 37 has a non-finite input (NaN) at feature 1"), "run_epoch: {err}");
    untouched(&t);
    let err = t.run_epoch(&clean, Some(&nan), &mut |_, _| true).unwrap_err().to_string();
    assert!(err.contains("sample 37 has a non-finite input (NaN)"), "validation set: {err}");
    untouched(&t);
    let mut inf = clean.clone();
    inf.x[0] = f32::INFINITY;
    let err = t.run_epoch(&inf, None, &mut |_, _| true).unwrap_err().to_string();
    assert!(err.contains("sample 0 has a non-finite input (inf)"), "infinity: {err}");

    let batch = nan.subset(&(30..46).collect::<Vec<_>>()); // sample 37 is the batch's 7th
    let err = t.step(&batch.x, &batch.labels).unwrap_err().to_string();
    assert!(err.contains("example 7 has a non-finite input NaN"), "step: {err}");
    assert!(!err.contains("diverged"), "bad input is not a divergence: {err}");
    untouched(&t);

    let mut fresh = GpuTrainer::new(gpu(), cfg, &p0, tc, clean.len()).unwrap();
    t.run_epoch(&clean, None, &mut |_, _| true).unwrap();
    fresh.run_epoch(&clean, None, &mut |_, _| true).unwrap();
    assert_eq!(t.params().unwrap(), fresh.params().unwrap(), "the refused data left a trace");
}

/// A NaN pixel in a batch given to `step` is bad input, named as such, on both image trainers,
/// and trains nothing: the GPU once took it and wrote NaN into every parameter.
#[test]
fn nan_pixels_are_refused_by_the_image_trainers() {
    let cfg = image_cfg(2, 1.0);
    let p0 = ImageParams::<f32>::init(&cfg, 2);
    let kind = OptimizerKind::adam(0.01).unwrap();
    let mut batch = images(4);
    batch.x[64 * 2 + 5] = f32::NAN; // image 2
    let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, 4, 1).unwrap();
    let err = cpu.step(&batch.x, &batch.labels).unwrap_err().to_string();
    assert!(err.contains("image 2 has a non-finite pixel NaN") && !err.contains("diverged"), "CPU: {err}");
    assert_eq!((cpu.steps_taken(), &cpu.params.data), (0, &p0.data), "CPU: nothing trained");
    let gpu = gpu();
    let mut dev = GpuImageTrainer::new(&gpu, &cfg, p0.clone(), kind, 4, 1).unwrap();
    let err = dev.step(&batch.x, &batch.labels).unwrap_err().to_string();
    assert!(err.contains("image 2 has a non-finite pixel NaN") && !err.contains("diverged"), "GPU: {err}");
    assert_eq!((dev.steps_taken(), dev.params().unwrap().data), (0, p0.data), "GPU: nothing trained");
}

/// The engine's own input checks give the library's kinds of error (through the trainers'
/// conversion too): data of the wrong width is a shape error, more classes or more examples
/// than the device holds are bad data.
#[test]
fn engine_input_errors_keep_their_kind() {
    use stablenet_core::Error;
    let cfg = dense(Integrator::Hamiltonian, Activation::Tanh, 4, 2.0);
    let mut net = stablenet_gpu::GpuNet::new(gpu(), &cfg, 16, 64, None).unwrap();
    let set = |d: usize, n: usize, classes: usize| Dataset { x: vec![0.5; n * d], labels: vec![0; n], d, classes };
    let kind = |r: anyhow::Result<()>| r.unwrap_err().downcast::<Error>().map_err(|e| format!("{e:#}"));
    assert!(matches!(kind(net.set_data(&set(3, 8, 2))), Ok(Error::Shape(m)) if m.contains("d = 3")));
    assert!(matches!(kind(net.set_data(&set(2, 8, 5))), Ok(Error::Data(m)) if m.contains("5 classes")));
    assert!(matches!(kind(net.set_data(&set(2, 65, 2))), Ok(Error::Data(m)) if m.contains("capacity of 64")));
    net.set_data(&set(2, 64, 2)).unwrap();
}
