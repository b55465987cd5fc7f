//! Every kernel against its CPU twin on a real adapter, at awkward sizes, as a table of errors
//! (`cargo xtask validate`, and the tests on lavapipe).
//!
//! The GPU computes in f32; the reference is the CPU engine in f64 from the same f32
//! parameters, so an error measures the kernel plus f32 round-off. Relative errors are
//! max |gpu - cpu| / max |cpu| per tensor (`stablenet_core::compare`: a NaN, an infinity or a
//! length mismatch is an infinite error); a row over several tensors (dW and dmu) reports the
//! worst of their own relative errors, so that a small one is not hidden behind a large one.
use crate::device::{DeviceRequest, Gpu};
use crate::engine::GpuNet;
use crate::kernels::{KernelOptions, Plan, RuntimeChecks, StepKernels, TiledTuning};
use crate::trainer::GpuTrainer;
use anyhow::{Result, anyhow, ensure};
use stablenet_core::backend::Backend;
use stablenet_core::compare::{errors, worst_of_groups};
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::network::{GradMethod, Network, Workspace};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::train::{Tally, drive_epoch, epoch_order};
use stablenet_core::{Activation, Integrator, ModelConfig, Params, Real, Rng, TrainConfig, Trainer, loss_grad};
use std::borrow::Cow;

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What the row checks: kernels and quantity (built for the tuned settings).
    pub kernels: Cow<'static, str>,
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

/// The parameter (or gradient) group `name`: an error, not an empty group that would compare
/// equal to the other side's, when the name is misspelt.
fn group<'a, T: Real>(p: &'a Params<T>, name: &str) -> Result<&'a [T]> {
    p.groups().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).ok_or_else(|| anyhow!("no parameter group {name}"))
}

/// The worst over the named groups of each group's errors, scaled by itself.
fn group_errors(gpu: &Params<f32>, cpu: &Params<f64>, names: &[&str]) -> Result<(f64, f64)> {
    let mut pairs = Vec::new();
    for name in names {
        pairs.push((group(gpu, name)?, group(cpu, name)?));
    }
    Ok(worst_of_groups(pairs))
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
    let mut row = |kernels: Cow<'static, str>, (max_abs, max_rel): (f64, f64), tol| {
        rows.push(Row { kernels, case: name.clone(), max_abs, max_rel, tol });
    };
    let (loss, g) = net.loss_grad(0, case.n)?;
    row("classify, reduce: loss".into(), errors(&[loss], &[cpu.loss]), tol);
    // GPU gradient groups against the CPU's, two groups a row, each scaled by itself.
    let cat = |g: &Params<f32>, names: [&str; 2]| group_errors(g, &cpu.grad, &names);
    row("classify, reduce: dW, dmu".into(), cat(&g, ["classifier.weight", "classifier.bias"])?, tol);
    row("open_adjoint, reduce: dK_in, db_in".into(), cat(&g, ["opening.weight", "opening.bias"])?, 3.0 * tol);
    // The steps, with the default kernels, then each other set the case can run, then the
    // tiled steps sized otherwise than by default (small workgroups, few of them, so several
    // tiles each, and 4 x 4 gradient blocks) and built without wgpu's runtime checks, as
    // benchmarks may time them; then, where the tuned tiles are too small for them, the 8 x 8
    // blocks of verlet_tiled8.wgsl in tiles of the default size; then Verlet with its
    // pre-activations kept (TiledTuning::keep), in 4 x 4 and in 8 x 8 blocks.
    let default = net.kernels();
    let tuned = TiledTuning {
        invocations: 64,
        groups: 2,
        gradient_block: Some(4),
        checks: RuntimeChecks::None,
        forward_block: 8,
        adjoint_block: 8,
        keep: false,
    };
    // One tile per workgroup: at n = 7900 (330 tiles on lavapipe) reduce_tiles takes 8 lanes.
    let eights = TiledTuning { groups: 1024, forward_block: 8, adjoint_block: 8, ..TiledTuning::default() };
    // Kept in 4 x 4 blocks with several tiles per workgroup (as tuned; in tiles of the default
    // size where those small ones are too many for lavapipe), and in 8 x 8 blocks (the
    // forward's alone where the adjoint's cannot run) with one tile each.
    let kept = TiledTuning { keep: true, invocations: 64, groups: 2, ..TiledTuning::default() };
    let kept_default = TiledTuning { keep: true, ..TiledTuning::default() };
    let kept8 = TiledTuning { keep: true, ..eights };
    let tag = |t: TiledTuning| {
        let tags = [(tuned, "tuned"), (eights, "8x8"), (kept, "keep"), (kept_default, "keep"), (kept8, "8x8, keep")];
        tags.into_iter().find(|o| o.0 == t).map(|o| o.1)
    };
    let mut options: Vec<KernelOptions> = [StepKernels::PerExample, StepKernels::Fused, StepKernels::Tiled]
        .into_iter()
        .filter(|k| *k != default)
        .map(|k| KernelOptions { kernels: Some(k), tiled: TiledTuning::default() })
        .collect();
    options.push(KernelOptions { kernels: Some(StepKernels::Tiled), tiled: tuned });
    let limits = net.gpu().limits.clone();
    let plan = |o: &KernelOptions| Plan::new(&cfg, case.n as u32, &limits, net.gpu().is_software(), o.kernels, o.tiled);
    let tuned_ablock = plan(options.last().expect("tuned pushed")).map_or(0, |p| p.ablock);
    let eights_opts = KernelOptions { kernels: Some(StepKernels::Tiled), tiled: eights };
    if tuned_ablock != 8 && plan(&eights_opts).is_ok_and(|p| p.ablock == 8) {
        options.push(eights_opts);
    }
    if case.integrator == Integrator::Hamiltonian {
        let tiled = |tiled| KernelOptions { kernels: Some(StepKernels::Tiled), tiled };
        options.extend([tiled(kept), tiled(kept_default)].into_iter().find(|o| plan(o).is_ok()));
        if plan(&tiled(kept8)).is_ok_and(|p| p.fblock == 8 || p.ablock == 8) {
            options.push(tiled(kept8));
        }
    }
    options.retain(|o| plan(o).is_ok());
    for opts in std::iter::once(None).chain(options.into_iter().map(Some)) {
        if let Some(opts) = opts {
            net = build(net.into_gpu(), opts)?;
        }
        let tagged = opts.and_then(|o| tag(o.tiled));
        let [forward, adjoint, rebuilt] = if let Some(tag) = tagged {
            // All but the 4 x 4 keep settings ask for 8 x 8 blocks; Verlet tiles that can take
            // them get them.
            let f = forward_kernel(&net);
            let a = if net.adjoint_block() == 8 { "tile_adjoint8" } else { "tile_adjoint" };
            [
                format!("{f} ({tag}): y_N"),
                format!("{a} ({tag}), reduce_tiles: dK_j, db_j"),
                format!("{a} ({tag}): y_0 rebuilt in reverse time"),
            ]
            .map(Cow::from)
        } else {
            row_names(net.kernels(), case.integrator).map(Cow::from)
        };
        row(forward, errors(&net.forward(0, case.n)?, &yn), tol);
        let (_, g) = net.loss_grad(0, case.n)?;
        if let Some(o) = opts.filter(|o| o.tiled.keep) {
            ensure!(net.keeps_pre_activations(), "{name}: {:?} keeps no pre-activations", o.tiled);
            // What the forward kept, against the CPU's states: y_N = y_0 + h sum_j sigma(v_j)
            // for v_j = K_j z_{j+1} + b_j (MODEL.md section 2), each example and component.
            let mut y = y0.clone();
            for j in 0..case.steps as u32 {
                for (y, v) in y.iter_mut().zip(net.read_kept(2 * j + 1, case.n)?) {
                    *y += cfg.h() * case.act.f(f64::from(v));
                }
            }
            let what = format!(
                "{} ({}): kept pre-activations, y_0 + h sum sigma(v_j)",
                forward_kernel(&net),
                tagged.unwrap_or("keep")
            );
            row(what.into(), errors(&y, &yn), tol);
        }
        // Gradients walk the whole network twice: a little more round-off.
        row(adjoint, cat(&g, ["steps.weight", "steps.bias"])?, 3.0 * tol);
        if case.integrator.is_reversible() {
            row(rebuilt, errors(&net.read_state(0, case.n)?, &y0), 3.0 * tol);
        }
    }
    Ok(rows)
}

/// The tiled Verlet forward that runs (the 8 x 8 blocks or the 4 x 4).
fn forward_kernel(net: &GpuNet) -> &'static str {
    if net.forward_block() == 8 { "tile_forward8" } else { "tile_forward" }
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
/// regularisers and each optimiser: each batch's loss and correct predictions (the classify
/// kernel's hits, their reduction and the hit log), the epoch's loss and accuracy, and the
/// final parameters.
pub fn check_training(req: &DeviceRequest) -> Result<Vec<Row>> {
    let split = Synthetic::Peaks.generate(1);
    let train = split.train.subset(&(0..640).collect::<Vec<_>>());
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for integrator in Integrator::ALL {
        for opt in [OptimizerKind::adam(0.01)?, OptimizerKind::sgd(0.1, 0.9)?] {
            runs.push((integrator, opt, 8, None));
        }
    }
    // Tiled steps by default (tiles.wgsl); Verlet's also with their pre-activations kept, which
    // the GPU trainer does for the stored method.
    runs.push((Integrator::Hamiltonian, OptimizerKind::adam(0.01)?, 12, None));
    runs.push((Integrator::Hamiltonian, OptimizerKind::adam(0.01)?, 12, Some(GradMethod::Stored)));
    runs.push((Integrator::Leapfrog, OptimizerKind::adam(0.01)?, 12, None));
    for (integrator, opt, width, method) in runs {
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
            method,
        };
        let p0 = Params::<f32>::init(&cfg, 2);
        let (n, bs, order) = (train.len(), tc.batch_size, epoch_order(tc.seed, 0, train.len()));
        let mut cpu = Trainer::new(cfg.clone(), p0.cast::<f64>(), tc.clone())?;
        // Its twin, stepped through the trainer's own batch loop, for each batch's loss and
        // correct predictions (run_epoch reports only their sums).
        let mut twin = Trainer::new(cfg.clone(), p0.cast::<f64>(), tc.clone())?;
        let mut gpu = GpuTrainer::new(Gpu::new(req)?, cfg.clone(), &p0, tc, n)?;
        let rc = Backend::run_epoch(&mut cpu, &train, None, &mut |_, _| true)?;
        let rg = gpu.run_epoch(&train, None, &mut |_, _| true)?;
        let (mut batch_loss, mut batch_hits) = (Vec::new(), Vec::new());
        let step = |_, x: &[f32], labels: &[u32]| -> stablenet_core::Result<(f64, usize)> {
            let (_, loss, correct) = twin.step(x, labels)?;
            batch_loss.push(loss);
            batch_hits.push(correct as f64);
            Ok((loss, correct))
        };
        drive_epoch(&train, &order, bs, 0, &mut Tally::default(), step, |_, _, _| true)?;
        // The GPU's logs of the epoch just run, one slot a batch.
        let (gpu_loss, gpu_hits) = (gpu.net().losses(batch_loss.len())?, gpu.net().hits(batch_hits.len())?);
        let kept = if gpu.net().keeps_pre_activations() { " (pre-activations kept)" } else { "" };
        let case = format!("{integrator} {} w={width}, 20 steps{kept}", opt.name());
        let separates = integrator == Integrator::Leapfrog && matches!(opt, OptimizerKind::Sgd { .. });
        let (pc, pg) = (Backend::params(&cpu)?.cast::<f64>(), gpu.params()?);
        let mut row = |kernels: &'static str, (max_abs, max_rel): (f64, f64), tol| {
            rows.push(Row { kernels: kernels.into(), case: case.clone(), max_abs, max_rel, tol });
        };
        // f32 against f64 along 20 steps of SGD with momentum 0.9 (lr 0.1): the
        // trajectories separate a little (most with leapfrog: 1.5e-4 measured on lavapipe).
        let loss_tol = 5e-4;
        row("classify, reduce, loss log: each batch's loss", errors(&gpu_loss, &batch_loss), loss_tol);
        let loss = errors(&[rg.train_loss], &[rc.train_loss]);
        row("regularize, adam/sgd (whole steps): epoch loss", loss, loss_tol);
        // Correct predictions: how many examples the batches' counts differ by in all (a
        // count of a wrong length or a NaN is infinite), over n. An f32 tie (two logits
        // within the trajectories' 1e-4) may flip one example: 1 / n, never more.
        let flips = if gpu_hits.len() == batch_hits.len() {
            let d: f64 = gpu_hits.iter().zip(&batch_hits).map(|(g, c)| (f64::from(*g) - c).abs()).sum();
            if d.is_finite() { d } else { f64::INFINITY }
        } else {
            f64::INFINITY
        };
        let one_tie = 1.0 / n as f64;
        row("classify, red_hits, hit log: each batch's correct predictions", (flips, flips / n as f64), one_tie);
        let acc = (rg.train_acc - rc.train_acc).abs();
        let acc = if acc.is_finite() { acc } else { f64::INFINITY };
        row("hit log, epoch report: training accuracy", (acc * n as f64, acc), one_tie);
        // Each group scaled by itself. Leapfrog with SGD (momentum 0.9, lr 0.1) grows its
        // parameters to ~30 and the f32 and f64 trajectories separate by ~1e-3 in every group
        // alike (measured on lavapipe: up to 5.2e-4 of the classifier weights' own scale, 1.5e-4
        // in the batch losses): 2e-3 there, with the whole parameter vector over its largest
        // entry still held to 1e-4 (measured 4.9e-5), as before groups were scaled apart.
        let names: Vec<&str> = pc.groups().iter().map(|(name, _)| *name).collect();
        let (flat_tol, group_tol) = (1e-4, if separates { 2e-3 } else { 1e-4 });
        row("regularize, adam/sgd (whole steps): parameters, each group", group_errors(&pg, &pc, &names)?, group_tol);
        if group_tol > flat_tol {
            let flat = |p: &Params<f32>| p.groups().iter().flat_map(|(_, v)| v.to_vec()).collect::<Vec<f32>>();
            let flat64 = |p: &Params<f64>| p.groups().iter().flat_map(|(_, v)| v.to_vec()).collect::<Vec<f64>>();
            row(
                "regularize, adam/sgd (whole steps): parameters, all at one scale",
                errors(&flat(&pg), &flat64(&pc)),
                flat_tol,
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN or an infinity in a result, or a result of the wrong length, fails its row.
    #[test]
    fn non_finite_or_short_results_fail() {
        let row =
            |(max_abs, max_rel): (f64, f64)| Row { kernels: "k".into(), case: "c".into(), max_abs, max_rel, tol: 1e-3 };
        let cpu = [1.0f64, -2.0, 3.0];
        assert!(row(errors(&[1.0f32, -2.0, 3.0], &cpu)).ok());
        assert!(!row(errors(&[f32::NAN; 3], &cpu)).ok());
        assert!(!row(errors(&[1.0f32, f32::INFINITY, 3.0], &cpu)).ok());
        assert!(!row(errors(&[1.0f32, -2.0], &cpu)).ok());
        assert!(!row((f64::NAN, f64::NAN)).ok());
    }

    /// A misspelt group is an error, not two empty groups that agree.
    #[test]
    fn unknown_groups_are_errors() {
        let cfg = ModelConfig {
            d: 2,
            width: 3,
            steps: 2,
            final_time: 1.0,
            integrator: Integrator::Resnet,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 2,
        };
        let p = Params::<f32>::init(&cfg, 1);
        assert!(group_errors(&p, &p.cast(), &["classifier.weight", "classifier.bias"]).is_ok());
        assert!(group_errors(&p, &p.cast(), &["classifier.weights"]).is_err());
    }
}
