//! `stablenet stability`: per-layer gradient norms and forward sensitivity against depth for
//! every integrator, at initialisation and after a short training — MODEL.md section 7 made
//! visible, as a markdown table, JSON and a PNG plot.
//!
//! Depth changes only the discretisation: the step parameters are drawn (and trained) once at
//! `--train-depth` N_b and carried to every depth N by the depth prolongation of MODEL.md
//! section 6 (N > N_b) or by injection, K'_i = K_{i N_b / N} (N < N_b), so every depth sees the
//! same K(t) on [0, T]. (With K_j drawn afresh at every depth, `--fresh-init`, the independent
//! steps average out as h -> 0 and every integrator drifts towards the identity flow.)
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use plotters::prelude::*;
use stablenet_core::data::{Dataset, peaks};
use stablenet_core::diagnostics::sensitivity::Sensitivity;
use stablenet_core::diagnostics::{GradStats, inspect, layer_grad_norms, sensitivity};
use stablenet_core::multilevel::prolongate;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{
    Activation, GradMethod, Integrator, ModelConfig, Params, Rng, TrainConfig, Trainer, evaluate, loss_grad,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// A network family whose behaviour against depth is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// resnet, K_j ~ N(0, s²/w).
    Resnet,
    /// antisym with --gamma, K_j ~ N(0, s²/w).
    Antisym,
    /// hamiltonian (Verlet), K_j ~ N(0, s²/w).
    Hamiltonian,
    /// leapfrog, K_j ~ N(0, s²/w).
    Leapfrog,
    /// resnet with K_j = 2I - 2 (superdiagonal): the paper's K+ (eigenvalues 2), explodes.
    #[value(name = "resnet-kplus")]
    ResnetKplus,
    /// resnet with K_j = -2I + 2 (subdiagonal): the paper's K- (eigenvalues -2), vanishes.
    #[value(name = "resnet-kminus")]
    ResnetKminus,
    /// antisym with gamma = 0: forward Euler on an imaginary spectrum (section 7).
    #[value(name = "antisym-gamma0")]
    AntisymGamma0,
}

impl Case {
    fn integrator(self) -> Integrator {
        match self {
            Case::Resnet | Case::ResnetKplus | Case::ResnetKminus => Integrator::Resnet,
            Case::Antisym | Case::AntisymGamma0 => Integrator::Antisym,
            Case::Hamiltonian => Integrator::Hamiltonian,
            Case::Leapfrog => Integrator::Leapfrog,
        }
    }

    fn label(self, gamma: f64) -> String {
        match self {
            Case::Antisym => format!("antisym γ={gamma}"),
            Case::ResnetKplus => "resnet K+".into(),
            Case::ResnetKminus => "resnet K-".into(),
            Case::AntisymGamma0 => "antisym γ=0".into(),
            c => c.integrator().name().into(),
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Case::Resnet => RGBColor(214, 39, 40),
            Case::Antisym => RGBColor(255, 127, 14),
            Case::Hamiltonian => RGBColor(31, 119, 180),
            Case::Leapfrog => RGBColor(44, 160, 44),
            Case::ResnetKplus => RGBColor(227, 119, 194),
            Case::ResnetKminus => RGBColor(140, 86, 75),
            Case::AntisymGamma0 => RGBColor(127, 127, 127),
        }
    }
}

#[derive(Args, Debug)]
pub struct StabilityArgs {
    /// Where stability.md, stability.json and stability.png go.
    #[arg(long, default_value = "out/stability")]
    out_dir: PathBuf,
    /// Depths N, each the training depth times or divided by a power of two.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64,128,256,512,1024")]
    depths: Vec<usize>,
    /// Final time T (fixed: h = T / N).
    #[arg(long, default_value_t = 5.0)]
    final_time: f64,
    /// Width w of every network.
    #[arg(long, default_value_t = 8)]
    width: usize,
    /// Network families to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "resnet,antisym,hamiltonian,leapfrog,resnet-kplus,resnet-kminus,antisym-gamma0"
    )]
    cases: Vec<Case>,
    /// Multiplies the random step weights K_j (s in K_j ~ N(0, s²/w)); large values break
    /// h s_max < 2 at small N.
    #[arg(long, default_value_t = 1.0)]
    init_scale: f64,
    /// Damping of the antisym case.
    #[arg(long, default_value_t = 0.05)]
    gamma: f64,
    /// Epochs of training (Adam) at --train-depth on peaks; 0 skips the trained half.
    #[arg(long, default_value_t = 20)]
    train_epochs: usize,
    /// The depth N_b at which parameters are drawn and trained (see the module notes).
    #[arg(long, default_value_t = 16)]
    train_depth: usize,
    /// Peaks training examples used (a subsample keeps the command short).
    #[arg(long, default_value_t = 1000)]
    train_examples: usize,
    /// Examples per Adam step of the training.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Peaks validation examples in the batch whose gradient is measured.
    #[arg(long, default_value_t = 256)]
    examples: usize,
    /// Examples over which |dy_N/dy_0| is averaged.
    #[arg(long, default_value_t = 8)]
    sens_examples: usize,
    /// Draw K_j afresh at every depth instead of carrying one K(t) across depths.
    #[arg(long)]
    fresh_init: bool,
    /// Seeds the data, the weights and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (cases run in parallel); default: the machine's cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Print the JSON results to stdout instead of the markdown table.
    #[arg(long)]
    json: bool,
}

/// The measurements of one network at one depth.
#[derive(Clone, Debug, serde::Serialize)]
struct Point {
    n: usize,
    h: f64,
    /// max_j h s_max(K_j).
    h_s_max: f64,
    /// Steps that meet the section 7 condition, linearised at y = 0.
    stable_steps: usize,
    loss: f64,
    grad: GradStats,
    sens: Sensitivity,
}

#[derive(Clone, Debug, serde::Serialize)]
struct Trained {
    epochs: usize,
    depth: usize,
    val_loss: f64,
    val_acc: f64,
    seconds: f64,
    points: Vec<Point>,
}

#[derive(Clone, Debug, serde::Serialize)]
struct CaseResult {
    case: String,
    integrator: Integrator,
    gamma: f64,
    init: Vec<Point>,
    trained: Option<Trained>,
    /// Why the trained half is missing, if it is.
    train_error: Option<String>,
    #[serde(skip)]
    kind: Option<Case>,
}

/// Everything a run measures, as written to stability.json.
#[derive(Debug, serde::Serialize)]
struct Results {
    width: usize,
    final_time: f64,
    depths: Vec<usize>,
    train_depth: usize,
    init_scale: f64,
    fresh_init: bool,
    examples: usize,
    sens_examples: usize,
    seconds: f64,
    cases: Vec<CaseResult>,
}

/// Inputs shared by every case.
struct Setup<'a> {
    a: &'a StabilityArgs,
    train: Dataset,
    val: Dataset,
    grad_batch: Dataset,
}

pub fn run(a: StabilityArgs) -> Result<()> {
    let start = Instant::now();
    check_args(&a)?;
    // Before the cases run (minutes at the defaults), not after.
    crate::ensure_dir(&a.out_dir)?;
    // Peaks (MODEL.md section 8) stores its samples class by class: shuffle before picking.
    let split = peaks(a.train_examples, a.examples.max(a.sens_examples).max(1000), a.seed);
    let mut order: Vec<usize> = (0..split.val.len()).collect();
    Rng::new(a.seed.wrapping_add(3)).shuffle(&mut order);
    order.truncate(a.examples.max(a.sens_examples));
    let setup = Setup { a: &a, grad_batch: split.val.subset(&order), train: split.train, val: split.val };
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    eprintln!(
        "stability: {} cases x {} depths (T = {}, width {}), {} thread(s); training {} epochs at N = {}",
        a.cases.len(),
        a.depths.len(),
        a.final_time,
        a.width,
        threads,
        a.train_epochs,
        a.train_depth
    );
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<CaseResult>>>> = Mutex::new((0..a.cases.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.min(a.cases.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&case) = a.cases.get(i) else { break };
                    let r = run_case(&setup, case);
                    out.lock().expect("no worker panicked")[i] = Some(r);
                }
            });
        }
    });
    let mut cases = Vec::new();
    for r in out.into_inner().expect("no worker panicked") {
        cases.push(r.expect("every case ran")?);
    }
    let results = Results {
        width: a.width,
        final_time: a.final_time,
        depths: a.depths.clone(),
        train_depth: a.train_depth,
        init_scale: a.init_scale,
        fresh_init: a.fresh_init,
        examples: setup.grad_batch.len().min(a.examples),
        sens_examples: a.sens_examples,
        seconds: start.elapsed().as_secs_f64(),
        cases,
    };
    let md = markdown(&results, &a);
    let json = serde_json::to_string_pretty(&results)?;
    let (md_path, json_path, png_path) =
        (a.out_dir.join("stability.md"), a.out_dir.join("stability.json"), a.out_dir.join("stability.png"));
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    std::fs::write(&json_path, &json).with_context(|| format!("writing {}", json_path.display()))?;
    plot(&results, &png_path).with_context(|| format!("drawing {}", png_path.display()))?;
    if a.json {
        println!("{json}");
    } else {
        print!("{md}");
    }
    eprintln!(
        "wrote {}, {} and {} in {:.1}s",
        md_path.display(),
        json_path.display(),
        png_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check_args(a: &StabilityArgs) -> Result<()> {
    if a.depths.is_empty() || a.cases.is_empty() {
        bail!("--depths and --cases must each name at least one value");
    }
    let nb = a.train_depth;
    if nb == 0 {
        bail!("--train-depth must be at least 1");
    }
    for &n in &a.depths {
        let (big, small) = (n.max(nb), n.min(nb));
        if small == 0 || !big.is_multiple_of(small) || !(big / small).is_power_of_two() {
            bail!("depth {n} is not --train-depth {nb} times or divided by a power of two");
        }
    }
    if !(a.init_scale.is_finite() && a.init_scale >= 0.0) {
        bail!("--init-scale must be finite and >= 0");
    }
    if a.examples == 0 || a.sens_examples == 0 || a.train_examples == 0 {
        bail!("--examples, --sens-examples and --train-examples must be at least 1");
    }
    if a.width == 0 {
        bail!("--width must be at least 1");
    }
    if !(a.final_time.is_finite() && a.final_time > 0.0) {
        bail!("--final-time must be finite and > 0");
    }
    // Checked here, not when training starts after the untrained half has run.
    if a.train_epochs > 0 && (a.batch_size == 0 || !(a.lr.is_finite() && a.lr > 0.0)) {
        bail!("training needs --batch-size >= 1 and a finite --lr > 0 (or --train-epochs 0)");
    }
    Ok(())
}

fn config(a: &StabilityArgs, case: Case, steps: usize) -> ModelConfig {
    ModelConfig {
        d: 2,
        width: a.width,
        steps,
        final_time: a.final_time,
        integrator: case.integrator(),
        activation: Activation::Tanh,
        gamma: match case {
            Case::Antisym => a.gamma,
            _ => 0.0,
        },
        classes: 5,
    }
}

/// The initial parameters of a case at `steps` steps.
fn init_params(a: &StabilityArgs, case: Case, cfg: &ModelConfig) -> Params<f64> {
    let mut p = Params::<f64>::init(cfg, a.seed.wrapping_add(1));
    let w = cfg.width;
    let fixed = |diag: f64, off: f64, upper: bool| {
        let mut k = vec![0.0; w * w];
        for i in 0..w {
            k[i * w + i] = diag;
            if i + 1 < w {
                if upper { k[i * w + i + 1] = off } else { k[(i + 1) * w + i] = off }
            }
        }
        k
    };
    let k = match case {
        Case::ResnetKplus => Some(fixed(2.0, -2.0, true)),
        Case::ResnetKminus => Some(fixed(-2.0, 2.0, false)),
        _ => None,
    };
    match k {
        Some(k) => p.k.chunks_exact_mut(w * w).for_each(|kj| kj.copy_from_slice(&k)),
        None => p.k.iter_mut().for_each(|v| *v *= a.init_scale),
    }
    p
}

/// Carries parameters from cfg.steps to n steps: prolongation up (MODEL.md section 6),
/// injection down (step i of the coarse net takes the fine step at the same time t = i h).
fn at_depth(cfg: &ModelConfig, p: &Params<f64>, n: usize) -> Result<(ModelConfig, Params<f64>)> {
    let (mut cfg, mut p) = (cfg.clone(), p.clone());
    while cfg.steps < n {
        (cfg, p) = prolongate(&cfg, &p)?;
    }
    while cfg.steps > n {
        let (w, m) = (p.w, cfg.steps / 2);
        let (ww, mut q) = (w * w, p.clone());
        q.n = m;
        q.k = (0..m).flat_map(|i| p.k_step(2 * i).to_vec()).collect();
        q.b = (0..m).flat_map(|i| p.b_step(2 * i).to_vec()).collect();
        debug_assert_eq!(q.k.len(), m * ww);
        cfg.steps = m;
        p = q;
    }
    Ok((cfg, p))
}

fn measure(s: &Setup, cfg: &ModelConfig, p: &Params<f64>) -> Result<Point> {
    let g = &s.grad_batch;
    let n = s.a.examples.min(g.len());
    let lg = loss_grad(cfg, p, &g.x[..n * g.d], &g.labels[..n], GradMethod::Stored)?;
    let sens = sensitivity(cfg, p, &g.x[..s.a.sens_examples.min(g.len()) * g.d])?;
    let report = inspect(cfg, p, None)?;
    Ok(Point {
        n: cfg.steps,
        h: cfg.h(),
        h_s_max: report.per_step.iter().map(|d| d.h_s_max).fold(0.0, f64::max),
        stable_steps: report.stable_steps,
        loss: lg.loss,
        grad: GradStats::of(&layer_grad_norms(&lg.grad)),
        sens,
    })
}

fn sweep(s: &Setup, case: Case, base: &(ModelConfig, Params<f64>), fresh: bool) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for &n in &s.a.depths {
        let (cfg, p) = if fresh {
            let cfg = config(s.a, case, n);
            let p = init_params(s.a, case, &cfg);
            (cfg, p)
        } else {
            at_depth(&base.0, &base.1, n)?
        };
        points.push(measure(s, &cfg, &p).with_context(|| format!("{} at N = {n}", case.label(s.a.gamma)))?);
    }
    Ok(points)
}

fn run_case(s: &Setup, case: Case) -> Result<CaseResult> {
    let a = s.a;
    let t0 = Instant::now();
    let cfg = config(a, case, a.train_depth);
    let p0 = init_params(a, case, &cfg);
    let init = sweep(s, case, &(cfg.clone(), p0.clone()), a.fresh_init)?;
    let (mut trained, mut train_error) = (None, None);
    if a.train_epochs > 0 {
        let t1 = Instant::now();
        match train(s, &cfg, p0) {
            Ok(p) => {
                let e = evaluate(&cfg, &p, &s.val.x, &s.val.labels)?;
                let points = sweep(s, case, &(cfg.clone(), p), false)?;
                trained = Some(Trained {
                    epochs: a.train_epochs,
                    depth: a.train_depth,
                    val_loss: e.loss,
                    val_acc: e.accuracy,
                    seconds: t1.elapsed().as_secs_f64(),
                    points,
                });
            }
            Err(e) => train_error = Some(format!("{e:#}")),
        }
    }
    let label = case.label(a.gamma);
    match (&trained, &train_error) {
        (Some(t), _) => eprintln!(
            "{label}: trained {} epochs at N = {}: validation loss {:.3}, accuracy {:.1}% ({:.1}s in all)",
            t.epochs,
            t.depth,
            t.val_loss,
            100.0 * t.val_acc,
            t0.elapsed().as_secs_f64()
        ),
        (None, Some(e)) => eprintln!("{label}: training failed: {e}"),
        _ => eprintln!("{label}: done ({:.1}s)", t0.elapsed().as_secs_f64()),
    }
    Ok(CaseResult {
        case: label,
        integrator: case.integrator(),
        gamma: cfg.gamma,
        init,
        trained,
        train_error,
        kind: Some(case),
    })
}

fn train(s: &Setup, cfg: &ModelConfig, p: Params<f64>) -> Result<Params<f64>> {
    let a = s.a;
    let tc = TrainConfig {
        epochs: a.train_epochs,
        batch_size: a.batch_size,
        optimizer: OptimizerKind::adam(a.lr)?,
        regularizer: Regularizer::default(),
        seed: a.seed.wrapping_add(2),
        method: Some(GradMethod::Stored),
    };
    let mut t = Trainer::new(cfg.clone(), p, tc)?;
    for _ in 0..a.train_epochs {
        t.run_epoch(&s.train, None, |_, _, _| true)?;
    }
    Ok(t.params)
}

/// Numbers in tables: plain decimals in [0.01, 1e4), scientific otherwise.
fn num(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v == 0.0 || (0.01..1e4).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

fn markdown(r: &Results, a: &StabilityArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Gradient norms and forward sensitivity against depth\n\nT = {}, width {}, tanh, h = T/N. \
         Parameters {} at N = {}{}; gradients of the mean cross-entropy on {} peaks validation \
         examples (f64, stored states); |dy_N/dy_0| = spectral norm of the Jacobian of the N steps \
         with respect to y_0, mean over {} examples. \"§7 ok\" counts the steps meeting the \
         integrator's MODEL.md section 7 condition at y = 0 (`stablenet inspect`). \
         first/last = |dL/dK_0| / |dL/dK_(N-1)| and first/median = |dL/dK_0| / median_j |dL/dK_j| \
         (>> 1: gradients explode towards the input; << 1: they vanish). Per-layer norms themselves \
         scale like h (like h² for leapfrog's last layer, which acts on y_N through h² F only: \
         its first/last ratio grows like N for that reason, first/median does not).\n",
        r.final_time,
        r.width,
        if a.fresh_init { "drawn afresh at every depth; trained" } else { "drawn and trained" },
        r.train_depth,
        if a.fresh_init { "" } else { " and carried to every depth by prolongation (MODEL.md section 6) or injection" },
        r.examples,
        r.sens_examples
    );
    let header = "| case | N | h | max h s_max(K_j) | §7 ok | min |dL/dK_j| | median | max | first/last | first/median | |dy_N/dy_0| |\n\
                  |---|---|---|---|---|---|---|---|---|---|---|\n";
    let rows = |s: &mut String, label: &str, pts: &[Point]| {
        for p in pts {
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} |",
                p.n,
                num(p.h),
                num(p.h_s_max),
                p.stable_steps,
                p.n,
                num(p.grad.min),
                num(p.grad.median),
                num(p.grad.max),
                num(p.grad.first_over_last),
                num(p.grad.first_over_median),
                num(p.sens.mean)
            );
        }
    };
    let _ = writeln!(s, "## At initialisation (K_j ~ N(0, s²/w), s = {}; K± fixed)\n", r.init_scale);
    s += header;
    for c in &r.cases {
        rows(&mut s, &c.case, &c.init);
    }
    if a.train_epochs > 0 {
        let _ = writeln!(
            s,
            "\n## After {} epochs of Adam (lr {}, batch {}) on {} peaks examples at N = {}\n",
            a.train_epochs, a.lr, a.batch_size, a.train_examples, a.train_depth
        );
        for c in &r.cases {
            match (&c.trained, &c.train_error) {
                (Some(t), _) => {
                    let _ = writeln!(
                        s,
                        "- {}: validation accuracy {:.1}%, loss {:.3}",
                        c.case,
                        100.0 * t.val_acc,
                        t.val_loss
                    );
                }
                (None, e) => {
                    let _ = writeln!(s, "- {}: training failed: {}", c.case, e.as_deref().unwrap_or("?"));
                }
            }
        }
        s += "\n";
        s += header;
        for c in &r.cases {
            if let Some(t) = &c.trained {
                rows(&mut s, &c.case, &t.points);
            }
        }
    }
    let _ = writeln!(s, "\n{:.1}s in all.", r.seconds);
    s
}

/// Registers the bundled DejaVu Sans for plotters' ab_glyph text (no system fonts needed).
fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if !ok {
        bail!("the bundled font could not be loaded");
    }
    Ok(())
}

/// 3 x 2 panels: gradient ratios first/last and first/median and the sensitivity (rows) at
/// initialisation and after training (columns), log-log against N (x = log2 N), one line per
/// case; the legend sits at the right.
fn plot(r: &Results, path: &Path) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1700, 1500)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Stability against depth: T = {}, width {}, h = T/N, init scale {}",
        r.final_time, r.width, r.init_scale
    );
    let root = root.titled(&title, ("sans-serif", 28))?;
    let (plots, legend) = root.split_horizontally(1460);
    let panels = plots.split_evenly((3, 2));
    let xs: Vec<f64> = r.depths.iter().map(|&n| (n as f64).log2()).collect();
    let (x0, x1) =
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let (x0, x1) = (x0 - 0.3, x1 + 0.3);
    let ticks = (x1.floor() - x0.ceil()) as usize + 1;
    type Pick = fn(&Point) -> f64;
    let rows: [(&str, &str, Pick); 3] = [
        ("gradient ratio first/last layer", "|dL/dK_0| / |dL/dK_(N-1)|", |p| p.grad.first_over_last),
        ("gradient ratio first/median layer", "|dL/dK_0| / median_j |dL/dK_j|", |p| p.grad.first_over_median),
        ("forward sensitivity", "|dy_N/dy_0|", |p| p.sens.mean),
    ];
    for (row, (name, ylabel, pick)) in rows.iter().enumerate() {
        // One y range per row so that initialisation and training compare at a glance.
        let vals: Vec<f64> = r
            .cases
            .iter()
            .flat_map(|c| c.init.iter().chain(c.trained.iter().flat_map(|t| t.points.iter())))
            .map(pick)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = vals.iter().copied().fold(0.5, f64::min) / 2.0;
        let hi = vals.iter().copied().fold(2.0, f64::max) * 2.0;
        for col in 0..2 {
            let stage = if col == 0 { "at initialisation" } else { "after training" };
            let mut chart = ChartBuilder::on(&panels[row * 2 + col])
                .caption(format!("{name} {stage}"), ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(80)
                .build_cartesian_2d(x0..x1, (lo..hi).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("N (steps, log scale)")
                .y_desc(*ylabel)
                .axis_desc_style(("sans-serif", 16))
                .label_style(("sans-serif", 15))
                .x_labels(ticks)
                .x_label_formatter(&|v| format!("{}", 2f64.powf(*v).round()))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .draw()?;
            // The neutral reference: ratio 1, sensitivity 1.
            chart.draw_series(LineSeries::new(vec![(x0, 1.0), (x1, 1.0)], BLACK.mix(0.4).stroke_width(1)))?;
            for c in &r.cases {
                let pts = if col == 0 { Some(&c.init) } else { c.trained.as_ref().map(|t| &t.points) };
                let Some(pts) = pts else { continue };
                let color = c.kind.map_or(BLACK, |k| k.color());
                let line: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| ((p.n as f64).log2(), pick(p)))
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .collect();
                chart.draw_series(LineSeries::new(line.clone(), color.stroke_width(3)))?;
                chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 4, color.filled())))?;
            }
        }
    }
    // Legend: one entry per case, then a note on leapfrog's first/last ratio.
    let font = ("sans-serif", 18).into_font();
    for (i, c) in r.cases.iter().enumerate() {
        let y = 80 + 34 * i as i32;
        let color = c.kind.map_or(BLACK, |k| k.color());
        legend.draw(&PathElement::new(vec![(10, y), (50, y)], color.stroke_width(4)))?;
        legend.draw(&Circle::new((30, y), 5, color.filled()))?;
        legend.draw(&Text::new(c.case.clone(), (60, y - 9), font.clone()))?;
    }
    let note = ("sans-serif", 14).into_font();
    let y = 100 + 34 * r.cases.len() as i32;
    for (i, line) in [
        "leapfrog's last K acts on y_N",
        "through h² F only, so its",
        "first/last ratio grows like N;",
        "first/median does not.",
    ]
    .iter()
    .enumerate()
    {
        legend.draw(&Text::new(*line, (10, y + 20 * i as i32), note.clone()))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: StabilityArgs,
    }

    fn args(extra: &[&str]) -> StabilityArgs {
        Cmd::parse_from(["stability"].iter().chain(extra)).a
    }

    #[test]
    fn stability_runs_at_tiny_sizes_and_writes_table_json_and_png() {
        let dir = std::env::temp_dir().join(format!("stablenet-stability-{}", std::process::id()));
        let d = dir.to_str().unwrap();
        let a = args(&[
            "--depths",
            "4,8",
            "--width",
            "2",
            "--train-depth",
            "4",
            "--train-epochs",
            "1",
            "--train-examples",
            "50",
            "--examples",
            "8",
            "--sens-examples",
            "2",
            "--out-dir",
            d,
        ]);
        run(a).unwrap();
        let md = std::fs::read_to_string(dir.join("stability.md")).unwrap();
        assert!(md.contains("| case | N | h |") && md.contains("## After 1 epochs"), "{md}");
        for case in ["resnet", "antisym γ=0.05", "hamiltonian", "leapfrog", "resnet K+", "resnet K-", "antisym γ=0"] {
            for n in [4, 8] {
                assert_eq!(md.matches(&format!("| {case} | {n} |")).count(), 2, "{case} at N = {n}, init and trained");
            }
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("stability.json")).unwrap()).unwrap();
        assert_eq!(json["cases"].as_array().unwrap().len(), 7);
        let png = std::fs::read(dir.join("stability.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dim = |o: usize| u32::from_be_bytes(png[o..o + 4].try_into().unwrap());
        assert_eq!((dim(16), dim(20)), (1700, 1500), "IHDR width and height");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn depths_are_reached_by_prolongation_and_injection() {
        let a = args(&["--width", "3"]);
        let cfg = config(&a, Case::Hamiltonian, 16);
        let p = init_params(&a, Case::Hamiltonian, &cfg);
        let (c4, p4) = at_depth(&cfg, &p, 4).unwrap();
        assert_eq!((c4.steps, p4.n), (4, 4));
        assert_eq!(p4.k_step(1), p.k_step(4), "injection keeps the step at the same time");
        let (c64, p64) = at_depth(&cfg, &p, 64).unwrap();
        assert_eq!((c64.steps, c64.final_time), (64, cfg.final_time));
        let (_, back) = at_depth(&c64, &p64, 16).unwrap();
        assert_eq!(back, p, "prolongation then injection is the identity");
        assert!(check_args(&args(&["--depths", "4,12"])).unwrap_err().to_string().contains("12"));
        for (bad, needle) in [("--width=0", "--width"), ("--batch-size=0", "--batch-size"), ("--lr=0", "--lr")] {
            let err = check_args(&args(&[bad])).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!(check_args(&args(&["--lr=0", "--train-epochs=0"])).is_ok(), "no training, no lr");
        // K+ is the paper's [[2, -2], [0, 2]] in the leading 2 x 2 block.
        let kp = init_params(&a, Case::ResnetKplus, &config(&a, Case::ResnetKplus, 2));
        assert_eq!(&kp.k_step(1)[..5], &[2.0, -2.0, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn numbers_print_compactly() {
        assert_eq!(num(0.5), "0.500");
        assert_eq!(num(2.5e-4), "2.50e-4");
        assert_eq!(num(f64::INFINITY), "inf");
    }
}
