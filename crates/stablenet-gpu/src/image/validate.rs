//! The image stage kernels against their CPU twin (`stablenet_core::image::stage::Stage`,
//! f64, example by example, from the same f32 parameters and inputs): final states, dLoss/dy_0,
//! dK_j, db_j, the reverse-time rebuild of y_0, and bit-identical reruns. Rows of the
//! `cargo xtask validate` table (crate::validate).
use super::{GpuImageNet, ImageStage, StageSpec};
use crate::device::{DeviceRequest, Gpu};
use crate::validate::Row;
use anyhow::Result;
use stablenet_core::compare::{errors, worst_of_groups};
use stablenet_core::image::stage::{Scratch, Stage};
use stablenet_core::image::{ImageConfig, ImageNet, ImageParams, Shape};
use stablenet_core::{Activation, Integrator, Rng};

/// A stage shape and batch to check.
#[derive(Clone, Copy, Debug)]
pub struct ImageCase {
    pub integrator: Integrator,
    pub act: Activation,
    pub n: usize,
    pub shape: Shape,
    pub steps: usize,
    /// Workgroups per grid row (a 2-D grid with idle workgroups), and (example, row) pairs per
    /// reduction chunk (chunks that end inside an example), where set.
    pub grid: Option<u32>,
    pub chunk_rows: Option<usize>,
}

/// Small awkward sizes (odd H, W; n c H W not a multiple of the workgroup; chunk boundaries
/// inside examples; a 2-D grid), relu for the reversible integrators, N = 1, and a larger case.
pub fn cases(quick: bool) -> Vec<ImageCase> {
    let mut out = Vec::new();
    for integrator in Integrator::ALL {
        let case = |act, n, (c, h, w), steps, grid, chunk_rows| ImageCase {
            integrator,
            act,
            n,
            shape: Shape::new(c, h, w),
            steps,
            grid,
            chunk_rows,
        };
        out.push(case(Activation::Tanh, 3, (3, 7, 5), 3, Some(2), Some(4)));
        if integrator.is_reversible() {
            out.push(case(Activation::Relu, 3, (3, 7, 5), 3, Some(2), Some(4)));
        }
        out.push(case(Activation::Tanh, 2, (2, 4, 6), 1, None, Some(5)));
        out.push(case(Activation::Tanh, 8, (8, 16, 12), 6, None, None));
        if !quick {
            out.push(case(Activation::Tanh, 10, (16, 28, 28), 8, None, None));
            out.push(case(Activation::Relu, 5, (4, 9, 3), 40, None, None));
        }
    }
    out
}

/// f32 round-off of a forward quantity grows with depth (as the dense checks); leapfrog's
/// 2 y_j - y_{j-1} amplifies it.
fn tol_for(case: &ImageCase) -> f64 {
    match case.integrator {
        Integrator::Leapfrog => 5e-6 * case.steps as f64,
        _ => 1e-5 * (case.steps as f64).sqrt(),
    }
}

/// The CPU twin of a whole stage for every example: (y_N, second state, dLoss/dy_0, dK, db).
struct Cpu {
    y: Vec<f64>,
    z: Vec<f64>,
    ybar: Vec<f64>,
    dk: Vec<f64>,
    db: Vec<f64>,
}

fn cpu_stage(spec: &StageSpec, k: &[f32], b: &[f32], y0: &[f32], ybar: &[f32]) -> Cpu {
    let up = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (k, b) = (up(k), up(b));
    let stage = Stage {
        integrator: spec.integrator,
        act: spec.act,
        shape: spec.shape,
        h: spec.h,
        gamma: spec.gamma,
        k: &k,
        b: &b,
    };
    let len = spec.shape.len();
    let mut sc = Scratch::new(len, spec.shape.padded_len());
    let euler = !spec.integrator.is_reversible();
    let mut out = Cpu { y: vec![], z: vec![], ybar: vec![], dk: vec![0.0; k.len()], db: vec![0.0; b.len()] };
    for (y0, yb) in y0.chunks_exact(len).zip(ybar.chunks_exact(len)) {
        let (mut y, mut z, mut yb, mut abar) = (up(y0), vec![0.0; len], up(yb), vec![0.0; len]);
        let mut stored = vec![0.0; if euler { spec.steps * len } else { 0 }];
        stage.forward(&mut y, &mut z, euler.then_some(&mut stored[..]), &mut sc);
        out.y.extend_from_slice(&y);
        if !euler {
            out.z.extend_from_slice(&z);
        }
        let st = euler.then_some(&stored[..]);
        stage.adjoint(&mut y, &mut z, st, &mut yb, &mut abar, &mut out.dk, &mut out.db, &mut sc);
        out.ybar.extend_from_slice(&yb);
    }
    out
}

/// Forward, adjoint and gradients of one case on the GPU against the CPU twin.
pub fn check_case(gpu: &Gpu, case: ImageCase) -> Result<Vec<Row>> {
    let Shape { c, h, w } = case.shape;
    let spec = StageSpec {
        integrator: case.integrator,
        act: case.act,
        shape: case.shape,
        steps: case.steps,
        h: 1.3 / case.steps as f64,
        gamma: if case.integrator == Integrator::Antisym { 0.05 } else { 0.0 },
    };
    let mut name = format!("{} {} n={} c={c} H={h} W={w} N={}", case.integrator, case.act, case.n, case.steps);
    let mut rng = Rng::new(11 + (c * h * w + case.steps) as u64);
    let mut draw = |len: usize, scale: f64| (0..len).map(|_| (scale * rng.normal()) as f32).collect::<Vec<f32>>();
    let k = draw(spec.k_len(), 1.0 / (9.0 * c as f64).sqrt());
    let b = draw(spec.b_len(), 0.3);
    let y0 = draw(case.n * case.shape.len(), 0.8);
    let ybar = draw(case.n * case.shape.len(), 1.0);

    let mut st = ImageStage::with_chunk_rows(gpu, spec, case.n, case.chunk_rows)?;
    if let Some(x) = case.grid {
        st.limit_grid(x);
        name += " (2-D grid)";
    }
    if let Some(r) = case.chunk_rows {
        name += &format!(" ({r} rows a chunk)");
    }
    st.set_params(&k, &b)?;
    let fwd = st.forward(&y0)?;
    let grad = st.adjoint(&ybar)?;
    let cpu = cpu_stage(&spec, &k, &b, &y0, &ybar);

    let tol = tol_for(&case);
    let mut rows = Vec::new();
    let mut row = |kernels: &'static str, (max_abs, max_rel): (f64, f64), tol| {
        rows.push(Row { kernels: kernels.into(), case: name.clone(), max_abs, max_rel, tol });
    };
    let (fwd_kernels, second) = match case.integrator {
        Integrator::Resnet | Integrator::Antisym => ("euler_step: y_N", None),
        Integrator::Hamiltonian => ("verlet_z, verlet_y: y_N", Some("verlet_z, verlet_y: z_N")),
        Integrator::Leapfrog => ("leap_act, leap_step: y_N", Some("leap_act, leap_step: y_{N-1}")),
    };
    row(fwd_kernels, errors(&fwd.y, &cpu.y), tol);
    if let Some(kernels) = second {
        row(kernels, errors(&fwd.z, &cpu.z), tol);
    }
    // The adjoint walks the stage twice (forward, then back): a little more round-off; each
    // kernel gradient entry also sums n H W products.
    row(
        match case.integrator {
            Integrator::Resnet | Integrator::Antisym => "euler_adjoint_s, euler_adjoint_bar: dLoss/dy_0",
            Integrator::Hamiltonian => "verlet_adjoint_*: dLoss/dy_0",
            Integrator::Leapfrog => "leap_adjoint_g, leap_adjoint_a: dLoss/dy_0",
        },
        errors(&grad.ybar, &cpu.ybar),
        3.0 * tol,
    );
    row("reduce_partial, reduce_finish: dK_j", errors(&grad.dk, &cpu.dk), 3.0 * tol);
    row("reduce_partial, reduce_finish: db_j", errors(&grad.db, &cpu.db), 3.0 * tol);
    if case.integrator.is_reversible() {
        let y0_64: Vec<f64> = y0.iter().map(|&v| f64::from(v)).collect();
        row("adjoint steps: y_0 rebuilt in reverse time", errors(&grad.y0, &y0_64), 3.0 * tol);
    }
    // Deterministic reductions: the same inputs give the same bits.
    st.forward(&y0)?;
    let again = st.adjoint(&ybar)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let same =
        bits(&again.dk) == bits(&grad.dk) && bits(&again.db) == bits(&grad.db) && bits(&again.ybar) == bits(&grad.ybar);
    row(
        "rerun: dK_j, db_j, dLoss/dy_0 bit for bit",
        if same { (0.0, 0.0) } else { (f64::INFINITY, f64::INFINITY) },
        0.0,
    );
    Ok(rows)
}

/// Whole networks to check against `ImageNet::loss_grad`.
pub fn net_cases(quick: bool) -> Vec<(ImageConfig, usize, Option<u32>)> {
    let mut out = Vec::new();
    for integrator in Integrator::ALL {
        let acts: &[Activation] =
            if integrator.is_reversible() { &[Activation::Tanh, Activation::Relu] } else { &[Activation::Tanh] };
        for &activation in acts {
            let cfg = |input, channels: &[usize], steps, classes| ImageConfig {
                integrator,
                activation,
                input,
                channels: channels.to_vec(),
                steps,
                final_time: 1.3,
                gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
                classes,
            };
            // Two stages (odd pooled width), on a 2-D grid.
            out.push((cfg(Shape::new(1, 8, 6), &[3, 4], 2, 3), 5, Some(2)));
            if activation == Activation::Tanh {
                out.push((cfg(Shape::new(2, 12, 8), &[4, 6, 8], 3, 10), 9, None));
                if !quick {
                    out.push((cfg(Shape::new(1, 28, 28), &[8, 16], 4, 10), 12, None));
                }
            }
        }
    }
    out
}

/// Loss, hits and every parameter tensor's gradient of a whole network on the GPU against
/// `ImageNet::loss_grad` in f64.
pub fn check_net_case(gpu: &Gpu, cfg: &ImageConfig, n: usize, grid: Option<u32>) -> Result<Vec<Row>> {
    let Shape { c, h, w } = cfg.input;
    let mut name = format!(
        "net {} {} n={n} {c}x{h}x{w} channels {:?} N={} C={}",
        cfg.integrator, cfg.activation, cfg.channels, cfg.steps, cfg.classes
    );
    let mut p = ImageParams::<f32>::init(cfg, 3);
    let mut rng = Rng::new(29 + n as u64);
    for slot in p.slots.clone() {
        if slot.name.ends_with(".bias") {
            for v in p.get_mut(&slot.name) {
                *v = (0.3 * rng.normal()) as f32;
            }
        }
    }
    let x: Vec<f32> = (0..n * cfg.input.len()).map(|_| rng.uniform() as f32).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.below(cfg.classes) as u32).collect();
    let mut net = GpuImageNet::new(gpu, cfg, n)?;
    if let Some(g) = grid {
        net.limit_grid(g);
        name += " (2-D grid)";
    }
    net.set_params(&p)?;
    let g = net.loss_grad(&x, &labels)?;
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let cpu = ImageNet::new(cfg)?.loss_grad(&p.cast::<f64>(), &x64, &labels, 1)?;

    // As the stage checks, with depth counted over every stage.
    let depth = (cfg.steps * cfg.stages()) as f64;
    let tol = match cfg.integrator {
        Integrator::Leapfrog => 5e-6 * depth,
        _ => 1e-5 * depth.sqrt(),
    };
    let mut rows = Vec::new();
    let mut row = |kernels: &'static str, what: &str, (max_abs, max_rel): (f64, f64), tol| {
        rows.push(Row { kernels: kernels.into(), case: format!("{name}: {what}"), max_abs, max_rel, tol });
    };
    row("opening, stages, widenings, classify, head_reduce", "loss", errors(&[g.loss as f32], &[cpu.loss]), tol);
    let hits = (g.correct as f64 - cpu.correct as f64).abs();
    row("classify, head_reduce", "correct predictions", (hits, hits), 0.0);
    // The gradients walk the network twice: three times the forward tolerance, as the stages.
    // Weight and bias each scaled by itself (a wrong bias is not hidden behind the weights).
    let mut pair = |kernels, pre: &str| {
        let (a, b) = (format!("{pre}.weight"), format!("{pre}.bias"));
        let each = [(g.grad.get(&a), cpu.grad.get(&a)), (g.grad.get(&b), cpu.grad.get(&b))];
        row(kernels, pre, worst_of_groups(each), 3.0 * tol);
    };
    pair("head_reduce: dW, dmu", "classifier");
    for s in (0..cfg.stages()).rev() {
        pair("stage adjoint, reduce_partial, reduce_finish: dK_j, db_j", &format!("stages.{s}"));
        if s > 0 {
            pair("widen_ubar, widen_wgrad_partial, wgrad_finish: dW, db", &format!("widen.{}", s - 1));
        }
    }
    pair("open_ubar, open_wgrad_partial, wgrad_finish: dK_in, db_in", "opening");
    Ok(rows)
}

/// Every image case on the adapter `req` selects: stages, then whole networks.
pub fn run(req: &DeviceRequest, quick: bool) -> Result<Vec<Row>> {
    let gpu = Gpu::new(req)?;
    let mut rows = Vec::new();
    for case in cases(quick) {
        rows.extend(check_case(&gpu, case)?);
    }
    for (cfg, n, grid) in net_cases(quick) {
        rows.extend(check_net_case(&gpu, &cfg, n, grid)?);
    }
    rows.extend(check_training(&gpu, quick)?);
    Ok(rows)
}

/// A few training steps of `GpuImageTrainer` against the CPU `ImageTrainer` (both f32, the
/// same initial parameters, batch order and optimiser): parameters and optimiser state after
/// 10 steps, and the epoch's mean training loss.
pub fn check_training(gpu: &Gpu, quick: bool) -> Result<Vec<Row>> {
    use stablenet_core::data::Dataset;
    use stablenet_core::image::ImageTrainer;
    use stablenet_core::optim::OptimizerKind;
    let mut cases = vec![
        (Integrator::Hamiltonian, Activation::Relu, OptimizerKind::adam(0.01)?),
        (Integrator::Leapfrog, Activation::Tanh, OptimizerKind::sgd(0.05, 0.9)?),
    ];
    if !quick {
        cases.push((Integrator::Resnet, Activation::Tanh, OptimizerKind::adam(0.01)?));
        cases.push((Integrator::Antisym, Activation::Relu, OptimizerKind::sgd(0.05, 0.0)?));
    }
    let mut rows = Vec::new();
    for (integrator, activation, kind) in cases {
        let cfg = ImageConfig {
            integrator,
            activation,
            input: Shape::new(1, 12, 10),
            channels: vec![3, 5],
            steps: 3,
            final_time: 1.0,
            gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
            classes: 3,
        };
        let (n, bs) = (40, 4);
        let mut rng = Rng::new(41);
        let labels: Vec<u32> = (0..n).map(|_| rng.below(cfg.classes) as u32).collect();
        // Class k brightens band k of rows: something to learn.
        let x: Vec<f32> = (0..n * cfg.input.len())
            .map(|i| {
                let (e, r) = (i / cfg.input.len(), (i % cfg.input.len()) / cfg.input.w);
                (0.3 * rng.uniform() + if r / 4 == labels[e] as usize { 0.6 } else { 0.0 }) as f32
            })
            .collect();
        let data = Dataset { x, labels, d: cfg.input.len(), classes: cfg.classes };
        let p0 = ImageParams::<f32>::init(&cfg, 5);
        let mut cpu = ImageTrainer::new(&cfg, p0.clone(), kind, bs, 7)?;
        let mut dev = super::GpuImageTrainer::new(gpu, &cfg, p0, kind, bs, 7)?;
        let rc = cpu.run_epoch(&data, None, |_, _, _| true)?;
        let rg = dev.run_epoch(&data, None, |_, _, _| true)?;
        let case =
            format!("train {integrator} {activation} {} 10 steps of {bs}, 1x12x10 channels [3, 5] N=3", kind.name());
        // Tensor by tensor, each scaled by itself (a bias is not hidden behind the weights).
        let pg = dev.params()?;
        let (abs, rel) = worst_of_groups(cpu.params.slots.iter().map(|s| (pg.get(&s.name), cpu.params.get(&s.name))));
        // Adam normalises every entry's step: f32 differences in a gradient at round-off level
        // (or a relu kink crossed on one side) move that entry by up to ~lr / 100 in 10 steps.
        let tol = if kind.name() == "adam" { 2e-4 } else { 1e-5 };
        rows.push(Row { kernels: "image trainer: params".into(), case: case.clone(), max_abs: abs, max_rel: rel, tol });
        // Tensor by tensor too; one the GPU lacks is an infinite error.
        let (sg, sc) = (dev.optimizer_state()?, cpu.optimizer_state());
        let none: &[f32] = &[];
        let (abs, rel) = worst_of_groups(
            sc.iter()
                .filter(|t| t.name != "optim.t")
                .map(|c| (sg.iter().find(|t| t.name == c.name).map_or(none, |t| &t.data[..]), &c.data[..])),
        );
        let (abs, rel) = if sg.len() == sc.len() { (abs, rel) } else { (f64::INFINITY, f64::INFINITY) };
        rows.push(Row {
            kernels: "image trainer: optimizer".into(),
            case: case.clone(),
            max_abs: abs,
            max_rel: rel,
            tol: 1e-3,
        });
        let (abs, rel) = errors(&[rg.train_loss], &[rc.train_loss]);
        rows.push(Row { kernels: "image trainer: loss".into(), case, max_abs: abs, max_rel: rel, tol: 1e-5 });
    }
    Ok(rows)
}
