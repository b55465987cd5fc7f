//! Every kernel against its CPU twin on a real adapter, at awkward sizes, as a table of errors
//! (`cargo xtask validate`, and the tests on lavapipe).
//!
//! The GPU computes in f32; the reference is the CPU engine in f64 from the same f32
//! parameters, so an error measures the kernel plus f32 round-off. Relative errors are
//! max |gpu - cpu| / max |cpu| per tensor.
use crate::device::{DeviceRequest, Gpu};
use crate::engine::GpuNet;
use crate::kernels::{KernelOptions, Plan, RuntimeChecks, StepKernels, TiledTuning};
use crate::trainer::GpuTrainer;
use anyhow::Result;
use stablenet_core::backend::Backend;
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::network::{GradMethod, Network, Workspace};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, Rng, TrainConfig, Trainer, loss_grad};

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub kernels: &'static str,
    pub case: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub tol: f64,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.max_rel <= self.tol && self.max_rel.is_finite()
    }
}

/// A network shape and batch to check.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub integrator: Integrator,
    pub act: Activation,
    pub d: usize,
    pub w: usize,
    pub steps: usize,
    pub c: usize,
    pub n: usize,
}

/// Awkward sizes: batches that are not multiples of the workgroup size (64) or that span
/// several reduction chunks (256) and run on a 2-D grid, w = 1, odd w, N = 1, N across
/// adjoint blocks of narrow nets (32 steps, the last one partial), w = 12 (loops unrolled,
/// adjoint not fused), w = 30 to 128 (tiled by default, the last tile partial, and past 256
/// tiles two per adjoint workgroup),
/// and a deep network. Every case also runs each other set of step kernels it can.
pub fn cases(quick: bool) -> Vec<Case> {
    let mut out = Vec::new();
    for integrator in Integrator::ALL {
        let case = |act, d, w, steps, c, n| Case { integrator, act, d, w, steps, c, n };
        out.push(case(Activation::Tanh, 3, 5, 4, 3, 70));
        out.push(case(Activation::Relu, 2, 4, 3, 2, 65));
        out.push(case(Activation::Tanh, 1, 1, 1, 2, 1));
        out.push(case(Activation::Tanh, 2, 8, 16, 5, 600));
        out.push(case(Activation::Relu, 2, 3, 37, 4, 130));
        out.push(case(Activation::Tanh, 2, 12, 3, 3, 70)); // unrolled loops, adjoint not fused
        let hamiltonian = integrator == Integrator::Hamiltonian;
        if hamiltonian {
            out.push(case(Activation::Tanh, 3, 30, 9, 4, 300));
        }
        if hamiltonian || !quick {
            out.push(case(Activation::Relu, 3, 128, 3, 4, 70)); // the widest
        }
        if integrator.is_reversible() {
            // Past 256 tiles (lavapipe: 28 examples each), the adjoint's workgroups take two.
            out.push(case(Activation::Tanh, 2, 128, 2, 3, 7900));
        }
        if !quick {
            out.push(case(Activation::Tanh, 4, 33, 7, 10, 129));
            if hamiltonian {
                // Per example just inside lavapipe's loop limit; the tiled reduction's 2-D grid.
                out.push(case(Activation::Tanh, 3, 121, 2, 4, 40));
                out.push(case(Activation::Tanh, 2, 64, 33, 3, 300));
            }
            if integrator.is_reversible() {
                out.push(case(Activation::Tanh, 2, 8, 1000, 5, 100));
            }
        }
    }
    out
}

fn errors(gpu: &[f32], cpu: &[f64]) -> (f64, f64) {
    let abs = gpu.iter().zip(cpu).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
    let scale = cpu.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-12);
    (abs, abs / scale)
}

/// Tolerance of a forward quantity: f32 round-off grows with depth.
fn tol_for(case: &Case) -> f64 {
    let depth = (case.steps as f64).sqrt().max(1.0);
    match case.integrator {
        Integrator::Leapfrog => 5e-6 * case.steps.max(1) as f64, // 2 y_j - y_{j-1} amplifies
        _ => 1e-5 * depth,
    }
}

/// Forward states, loss, every gradient group and the reverse-time rebuild of one case.
pub fn check_case(gpu: Gpu, case: Case) -> Result<Vec<Row>> {
    let cfg = ModelConfig {
        d: case.d,
        width: case.w,
        steps: case.steps,
        final_time: 1.3,
        integrator: case.integrator,
        activation: case.act,
        gamma: if case.integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: case.c,
    };
    let name = format!(
        "{} {} d={} w={} N={} C={} n={}",
        case.integrator, case.act, case.d, case.w, case.steps, case.c, case.n
    );
    let mut rng = Rng::new(17 + case.w as u64 + case.steps as u64);
    let mut p = Params::<f32>::init(&cfg, 5);
    for b in p.b.iter_mut().chain(p.b_in.iter_mut()).chain(p.mu.iter_mut()) {
        *b = (0.3 * rng.normal()) as f32;
    }
    let x: Vec<f32> = (0..case.n * case.d).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u32> = (0..case.n).map(|_| rng.below(case.c) as u32).collect();
    let data = Dataset { x: x.clone(), labels: labels.clone(), d: case.d, classes: case.c };
    // The network on the GPU with the given step kernels (default options: the default).
    let grid = case.n > 256; // a 2-D grid with idle workgroups in its last row
    let build = |gpu: Gpu, opts: KernelOptions| -> Result<GpuNet> {
        let mut net = GpuNet::with_options(gpu, &cfg, case.n, case.n, None, opts)?;
        if grid {
            net.limit_grid(if net.kernels() == StepKernels::Tiled { 2 } else { 3 });
        }
        net.set_params(&p)?;
        net.set_data(&data)?;
        Ok(net)
    };
    let mut net = build(gpu, KernelOptions::default())?;
    let name = if grid { name + " (2-D grid)" } else { name };

    // CPU twin, f64.
    let p64: Params<f64> = p.cast();
    let cpu_net = Network::new(&cfg, &p64)?;
    let mut ws = Workspace::new(&cfg, GradMethod::Stored);
    let (mut y0, mut yn) = (vec![0.0; case.n * case.w], vec![0.0; case.n * case.w]);
    for (i, xs) in x.chunks_exact(case.d).enumerate() {
        let xi: Vec<f64> = xs.iter().map(|v| f64::from(*v)).collect();
        let r = i * case.w..(i + 1) * case.w;
        let (a, b) = (&mut y0[r.clone()], &mut yn[r]);
        cpu_net.states(&xi, a, b, &mut ws);
    }
    let cpu = loss_grad(&cfg, &p64, &x, &labels, GradMethod::Stored)?;

    let tol = tol_for(&case);
    let mut rows = Vec::new();
    let mut row = |kernels, (max_abs, max_rel): (f64, f64), tol| {
        rows.push(Row { kernels, case: name.clone(), max_abs, max_rel, tol });
    };
    let (loss, g) = net.loss_grad(0, case.n)?;
    row("classify, reduce: loss", errors(&[loss], &[cpu.loss]), tol);
    // GPU gradient groups against the CPU's, two groups at a time.
    let cat = |g: &Params<f32>, names: [&str; 2]| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for name in names {
            a.extend(g.groups().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_vec()).unwrap_or_default());
            b.extend(
                cpu.grad.groups().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_vec()).unwrap_or_default(),
            );
        }
        errors(&a, &b)
    };
    row("classify, reduce: dW, dmu", cat(&g, ["classifier.weight", "classifier.bias"]), tol);
    row("open_adjoint, reduce: dK_in, db_in", cat(&g, ["opening.weight", "opening.bias"]), 3.0 * tol);
    // The steps, with the default kernels, then each other set the case can run, then the
    // tiled steps sized otherwise than by default (small workgroups, few of them, so several
    // tiles each, and 4 x 4 gradient blocks) and built without wgpu's runtime checks, as
    // benchmarks may time them.
    let default = net.kernels();
    let tuned = TiledTuning { invocations: 64, groups: 2, gradient_block: Some(4), checks: RuntimeChecks::None };
    let mut options: Vec<KernelOptions> = [StepKernels::PerExample, StepKernels::Fused, StepKernels::Tiled]
        .into_iter()
        .filter(|k| *k != default)
        .map(|k| KernelOptions { kernels: Some(k), tiled: TiledTuning::default() })
        .collect();
    options.push(KernelOptions { kernels: Some(StepKernels::Tiled), tiled: tuned });
    let limits = net.gpu().limits.clone();
    let runs = |o: &KernelOptions| {
        Plan::new(&cfg, case.n as u32, &limits, net.gpu().is_software(), o.kernels, o.tiled).is_ok()
    };
    options.retain(runs);
    for opts in std::iter::once(None).chain(options.into_iter().map(Some)) {
        if let Some(opts) = opts {
            net = build(net.into_gpu(), opts)?;
        }
        let tuned_run = opts.is_some_and(|o| o.tiled == tuned);
        let [forward, adjoint, rebuilt] = if tuned_run {
            [
                "tile_forward (tuned): y_N",
                "tile_adjoint (tuned), reduce_tiles: dK_j, db_j",
                "tile_adjoint (tuned): y_0 rebuilt in reverse time",
            ]
        } else {
            row_names(net.kernels(), case.integrator)
        };
        row(forward, errors(&net.forward(0, case.n)?, &yn), tol);
        let (_, g) = net.loss_grad(0, case.n)?;
        // Gradients walk the whole network twice: a little more round-off.
        row(adjoint, cat(&g, ["steps.weight", "steps.bias"]), 3.0 * tol);
        if case.integrator.is_reversible() {
            row(rebuilt, errors(&net.read_state(0, case.n)?, &y0), 3.0 * tol);
        }
    }
    Ok(rows)
}

/// Table labels of the forward, adjoint and rebuild rows for the step kernels.
fn row_names(kernels: StepKernels, integrator: Integrator) -> [&'static str; 3] {
    let euler = matches!(integrator, Integrator::Resnet | Integrator::Antisym);
    match kernels {
        StepKernels::PerExample if euler => {
            ["build_ops, open_forward, steps_forward: y_N", "step_adjoint (per example), reduce: dK_j, db_j", ""]
        }
        StepKernels::PerExample => [
            "open_forward, steps_forward: y_N",
            "step_adjoint (per example), reduce: dK_j, db_j",
            "step_adjoint (per example): y_0 rebuilt in reverse time",
        ],
        StepKernels::Fused => [
            "open_forward, steps_forward (fused): y_N",
            "step_adjoint (fused), reduce_finish: dK_j, db_j",
            "step_adjoint (fused): y_0 rebuilt in reverse time",
        ],
        StepKernels::Tiled => [
            "build_ops, open_forward, tile_forward: y_N",
            "tile_adjoint, reduce_tiles: dK_j, db_j",
            "tile_adjoint: y_0 rebuilt in reverse time",
        ],
    }
}

/// 20 training steps on the GPU and the CPU from the same start, in the same order, with
/// regularisers and each optimiser: final loss and parameters.
pub fn check_training(req: &DeviceRequest) -> Result<Vec<Row>> {
    let split = Synthetic::Peaks.generate(1);
    let train = split.train.subset(&(0..640).collect::<Vec<_>>());
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for integrator in Integrator::ALL {
        for opt in [OptimizerKind::adam(0.01)?, OptimizerKind::sgd(0.1, 0.9)?] {
            runs.push((integrator, opt, 8));
        }
    }
    // Tiled steps by default (tiles.wgsl).
    runs.push((Integrator::Hamiltonian, OptimizerKind::adam(0.01)?, 12));
    runs.push((Integrator::Leapfrog, OptimizerKind::adam(0.01)?, 12));
    for (integrator, opt, width) in runs {
        let cfg = ModelConfig {
            d: 2,
            width,
            steps: 6,
            final_time: 5.0,
            integrator,
            activation: Activation::Tanh,
            gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
            classes: 5,
        };
        let tc = TrainConfig {
            epochs: 1,
            batch_size: 32,
            optimizer: opt,
            regularizer: Regularizer { alpha_t: 1e-3, alpha_w: 1e-4 },
            seed: 3,
            method: None,
        };
        let p0 = Params::<f32>::init(&cfg, 2);
        let mut cpu = Trainer::new(cfg.clone(), p0.cast::<f64>(), tc.clone())?;
        let mut gpu = GpuTrainer::new(Gpu::new(req)?, cfg.clone(), &p0, tc, train.len())?;
        let rc = Backend::run_epoch(&mut cpu, &train, None, &mut |_, _| true)?;
        let rg = gpu.run_epoch(&train, None, &mut |_, _| true)?;
        let case = format!("{integrator} {} w={width}, 20 steps", opt.name());
        let (pc, pg) = (Backend::params(&cpu)?.cast::<f64>(), gpu.params()?);
        let flat = |p: &Params<f32>| p.groups().iter().flat_map(|(_, v)| v.to_vec()).collect::<Vec<f32>>();
        let flat64 = |p: &Params<f64>| p.groups().iter().flat_map(|(_, v)| v.to_vec()).collect::<Vec<f64>>();
        let kernels = "regularize, adam/sgd (whole steps): epoch loss";
        rows.push(Row {
            kernels,
            case: case.clone(),
            max_abs: (rg.train_loss - rc.train_loss).abs(),
            max_rel: (rg.train_loss - rc.train_loss).abs() / rc.train_loss,
            // f32 against f64 along 20 steps of SGD with momentum 0.9 (lr 0.1): the
            // trajectories separate a little; the parameters themselves stay within 1e-4.
            tol: 5e-4,
        });
        let (max_abs, max_rel) = errors(&flat(&pg), &flat64(&pc));
        rows.push(Row { kernels: "regularize, adam/sgd (whole steps): parameters", case, max_abs, max_rel, tol: 1e-4 });
    }
    Ok(rows)
}

/// All checks on the adapter `req` selects: the dense network, training, the image stage.
/// Every check; `emit` gets each case's rows as they are done, so that a run cut short (a
/// borrowed machine's time limit) still leaves what it measured.
pub fn run(req: &DeviceRequest, quick: bool, emit: &mut dyn FnMut(&[Row])) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut add = |new: Vec<Row>| {
        emit(&new);
        rows.extend(new);
    };
    for case in cases(quick) {
        add(check_case(Gpu::new(req)?, case)?);
    }
    add(check_training(req)?);
    add(crate::image::validate::run(req, quick)?);
    Ok(rows)
}

/// The head of the markdown table of rows.
pub const TABLE_HEAD: &str =
    "| kernels | case | max abs error | max rel error | tolerance | |\n|---|---|---|---|---|---|";

/// The rows as a markdown table.
pub fn table(rows: &[Row]) -> String {
    std::iter::once(TABLE_HEAD.to_string()).chain(rows.iter().map(table_row)).map(|l| l + "\n").collect()
}

/// A row of the table.
pub fn table_row(r: &Row) -> String {
    format!(
        "| {} | {} | {:.2e} | {:.2e} | {:.0e} | {} |",
        r.kernels,
        r.case,
        r.max_abs,
        r.max_rel,
        r.tol,
        if r.ok() { "ok" } else { "FAIL" }
    )
}
