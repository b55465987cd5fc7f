//! `stablenet train`: an experiment (TOML file and/or flags) trained level by level
//! (MODEL.md section 6), with per-epoch metrics, atomic checkpoints, `--resume`, and a clean
//! stop on Ctrl-C.
use crate::grad::{method_name, parse_method};
use crate::{BackendArg, Chosen};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stablenet_core::data::{Dataset, Split};
use stablenet_core::experiment::{DataSource, Experiment, Plan};
use stablenet_core::image::ImageParams;
use stablenet_core::io::{Tensor, load_data, load_image_model, load_model, save_model};
use stablenet_core::multilevel::prolongate;
use stablenet_core::train::Tally;
use stablenet_core::{
    Activation, Backend, EpochReport, GradMethod, Integrator, ModelConfig, Params, TrainConfig, Trainer,
};
use stablenet_gpu::GpuTrainer;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment file (TOML, see experiments/); flags override its fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue an interrupted run from its checkpoint (its experiment is stored inside).
    #[arg(long, conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Data set: peaks, ellipses, swiss-roll, or a safetensors file with `x` and `labels`.
    #[arg(long)]
    data: Option<String>,
    /// Validation data file (with a data file).
    #[arg(long)]
    val_data: Option<String>,
    /// resnet, antisym, hamiltonian or leapfrog.
    #[arg(long)]
    integrator: Option<Integrator>,
    /// Width w of the network (features per example in every step).
    #[arg(long)]
    width: Option<usize>,
    /// Number of steps N (h = T / N) of a single-level run.
    #[arg(long, conflicts_with = "levels")]
    steps: Option<usize>,
    /// Multi-level training: N at each level, e.g. 4,8,16,32 (each the double of the last).
    #[arg(long, value_delimiter = ',')]
    levels: Option<Vec<usize>>,
    /// Final time T.
    #[arg(long)]
    final_time: Option<f64>,
    /// tanh or relu.
    #[arg(long)]
    activation: Option<Activation>,
    /// Damping of the antisymmetric operator.
    #[arg(long)]
    gamma: Option<f64>,
    /// Passes over the training set per level (default: per data set).
    #[arg(long)]
    epochs: Option<usize>,
    /// Examples per optimiser step (default: per data set).
    #[arg(long)]
    batch_size: Option<usize>,
    /// adam or sgd.
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate (default 0.01).
    #[arg(long)]
    lr: Option<f64>,
    /// Cosine decay of the learning rate to this value within each level.
    #[arg(long)]
    lr_final: Option<f64>,
    /// Momentum (sgd only).
    #[arg(long)]
    momentum: Option<f64>,
    /// Weight of the smoothness-in-time regulariser (MODEL.md section 5).
    #[arg(long)]
    alpha_t: Option<f64>,
    /// Weight decay (MODEL.md section 5).
    #[arg(long)]
    alpha_w: Option<f64>,
    /// Seeds the data, the initialisation and the batch order.
    #[arg(long)]
    seed: Option<u64>,
    /// Image data: channels of each stage, e.g. 8,16,32 (each stage after the first halves the image).
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<usize>>,
    /// Image data: folder of the IDX files (default data, as `cargo xtask data` fills it).
    #[arg(long)]
    data_dir: Option<String>,
    /// Image data: train on the first this many training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Image data: evaluate on the first this many test images.
    #[arg(long)]
    val_limit: Option<usize>,
    /// Gradient method: stored, reverse, checkpoint:K (default: the integrator's own; with
    /// --resume, the interrupted run's). The GPU rebuilds or keeps states as the integrator
    /// needs, but `stored` has hamiltonian nets on its tiled steps keep their pre-activations
    /// (fewer products, memory growing with depth).
    #[arg(long, value_parser = parse_method)]
    method: Option<GradMethod>,
    /// GPU: before each level, time every step-kernel setting the model and batch allow for a
    /// few steps on this adapter and train with the fastest (the table goes to stderr; the
    /// checkpoints keep the choice, so that --resume continues with it).
    #[arg(long, conflicts_with = "kernels")]
    tune: bool,
    /// GPU: the step kernels as a tuning table names them, e.g. "tiled fblock=8,ablock=8,groups=1024"
    /// or "fused", for every level or one per level separated by ';' (to repeat a tuned run bit
    /// for bit: a tuned run ends by naming them).
    #[arg(long)]
    kernels: Option<String>,
    /// Where to write the trained model [default: out/model.safetensors; with --resume, the
    /// interrupted run's].
    #[arg(long)]
    out: Option<PathBuf>,
    /// One JSON line per epoch (with --resume: the interrupted run's file, appended to).
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Checkpoint written atomically after every epoch (default: OUT with .ckpt.safetensors;
    /// with --resume, the file resumed from).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

impl TrainArgs {
    fn flags(&self) -> Experiment {
        Experiment {
            name: None,
            data: self.data.clone(),
            val_data: self.val_data.clone(),
            integrator: self.integrator,
            activation: self.activation,
            width: self.width,
            steps: self.steps,
            levels: self.levels.clone(),
            final_time: self.final_time,
            gamma: self.gamma,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            lr_final: self.lr_final,
            momentum: self.momentum,
            epochs: self.epochs,
            batch_size: self.batch_size,
            alpha_t: self.alpha_t,
            alpha_w: self.alpha_w,
            seed: self.seed,
            channels: self.channels.clone(),
            data_dir: self.data_dir.clone(),
            train_limit: self.train_limit,
            val_limit: self.val_limit,
        }
    }
}

/// How a GPU run picks its step kernels at each level.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelChoice {
    /// The engine's defaults.
    Default,
    /// Kernel tuning before each level (`--tune`).
    Tune,
    /// One setting for every level (`--kernels`).
    Pinned(String),
}

impl KernelChoice {
    /// What the checkpoints record (`run_kernels`; none for the defaults).
    fn recorded(&self) -> Option<&str> {
        match self {
            KernelChoice::Default => None,
            KernelChoice::Tune => Some("tune"),
            KernelChoice::Pinned(s) => Some(s),
        }
    }

    fn from_recorded(s: &str) -> Self {
        if s == "tune" { KernelChoice::Tune } else { KernelChoice::Pinned(s.to_string()) }
    }
}

/// A GPU run's kernel choice, the setting its current level runs and those of every level so
/// far (`;` between levels, empty where a level had the defaults or the CPU), added to what
/// [`checkpoint_meta`] records: a resumed tuned run continues on the kernels it had, and a
/// finished one can be pinned level by level.
fn kernel_meta(meta: &mut BTreeMap<String, String>, choice: &KernelChoice, level: Option<&str>, by_level: &[String]) {
    if let Some(c) = choice.recorded() {
        meta.insert("run_kernels".into(), c.to_string());
    }
    if let Some(l) = level {
        meta.insert("level_kernels".into(), l.to_string());
    }
    if by_level.iter().any(|k| !k.is_empty()) {
        meta.insert("kernels_by_level".into(), by_level.join(";"));
    }
}

/// The setting `--kernels` gives a level: its only one, or the level's of one per level
/// (separated by `;`).
fn level_setting(k: &str, level: usize, levels: usize) -> Result<String> {
    let parts: Vec<&str> = k.split(';').map(str::trim).collect();
    match parts.len() {
        1 => Ok(parts[0].to_string()),
        n if n == levels => Ok(parts[level].to_string()),
        n => bail!("--kernels names {n} settings for {levels} levels: give one, or one per level"),
    }
}

/// Where a run stands: level, epochs done in it, next batch; the parameters and optimiser
/// state; where the run wrote and how it took its gradients.
pub struct Resume {
    pub(crate) level: usize,
    pub(crate) epoch: usize,
    pub(crate) batch: usize,
    /// The running sums of the epoch stopped inside (None in older checkpoints).
    pub(crate) tally: Option<Tally>,
    pub(crate) params: Saved,
    pub(crate) optim: Vec<Tensor>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) metrics: Option<PathBuf>,
    pub(crate) method: Option<GradMethod>,
    /// How the run picked its GPU kernels (`run_kernels`), and what the checkpoint's level ran
    /// (`level_kernels`); None for the defaults and in older checkpoints.
    pub(crate) kernels: Option<KernelChoice>,
    pub(crate) level_kernels: Option<String>,
    /// What every level so far ran (`kernels_by_level`; empty where unknown).
    pub(crate) kernels_by_level: Vec<String>,
}

impl Resume {
    /// The running sums to resume the epoch with, checked against the position in an epoch of
    /// `n` examples in batches of `batch_size`. An older checkpoint has none: the epoch's
    /// training figures then cover only the batches after the resume (said once here).
    pub(crate) fn running_sums(&self, batch_size: usize, n: usize) -> Result<Tally> {
        let Some(sums) = self.tally else {
            if self.batch > 0 {
                eprintln!(
                    "note: this checkpoint predates stored running sums; the resumed epoch's training loss \
                     and accuracy cover batches {}.. only",
                    self.batch + 1
                );
            }
            return Ok(Tally::default());
        };
        sums.check_at(self.batch, batch_size, n).context("the checkpoint's running sums")?;
        Ok(sums)
    }
}

/// The parameters a checkpoint holds: a dense network or an image network.
pub enum Saved {
    Dense(Params<f32>),
    Image(ImageParams<f32>),
}

fn load_split(plan: &Plan) -> Result<Split> {
    Ok(match &plan.data {
        DataSource::Synthetic(s) => s.generate(plan.seed),
        DataSource::Images { .. } => unreachable!("image data is trained by crate::image"),
        DataSource::File { train, val } => {
            let train = load_data(train, None)?;
            let val = match val {
                Some(v) => load_data(v, Some(train.classes))?,
                None => Dataset { x: vec![], labels: vec![], d: train.d, classes: train.classes },
            };
            if val.d != train.d {
                bail!("validation data has d = {}, training data d = {}", val.d, train.d);
            }
            Split { train, val }
        }
    })
}

/// OUT with .ckpt.safetensors.
fn checkpoint_beside(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}.ckpt.safetensors"))
}

fn save(path: &Path, cfg: &ModelConfig, trainer: &dyn Backend, meta: &BTreeMap<String, String>) -> Result<()> {
    let params = trainer.params()?;
    save_model(path, cfg, &params, &trainer.optimizer_state()?, meta)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// What a checkpoint records beside the tensors: the experiment, (level, epoch, next batch),
/// the running sums of an epoch stopped inside, and where the run writes and how it takes CPU
/// gradients (absolute paths), so that `--resume CHECKPOINT` alone continues the same run,
/// from any folder, with the metrics the uninterrupted run would have written.
pub(crate) fn checkpoint_meta(
    exp: &Experiment,
    files: &RunFiles,
    method: Option<GradMethod>,
    pos: (usize, usize, usize),
    tally: Tally,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("experiment".to_string(), exp.to_toml());
    meta.insert("checkpoint_level".into(), pos.0.to_string());
    meta.insert("checkpoint_epoch".into(), pos.1.to_string());
    meta.insert("checkpoint_batch".into(), pos.2.to_string());
    // f64 Display is the shortest text that reads back to the same bits.
    meta.insert("checkpoint_loss_sum".into(), tally.loss_sum.to_string());
    meta.insert("checkpoint_correct".into(), tally.correct.to_string());
    meta.insert("checkpoint_seen".into(), tally.seen.to_string());
    meta.insert("checkpoint_seconds".into(), tally.seconds.to_string());
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    meta.insert("run_out".into(), absolute(&files.out));
    if let Some(m) = &files.metrics {
        meta.insert("run_metrics".into(), absolute(m));
    }
    if let Some(m) = method {
        meta.insert("run_method".into(), method_name(m));
    }
    meta
}

pub fn read_resume(path: &Path) -> Result<(Experiment, Resume)> {
    let ctx = || format!("reading checkpoint {}", path.display());
    let (params, metadata, extras) = if crate::image::is_image_file(path).with_context(ctx)? {
        let m = load_image_model(path).with_context(ctx)?;
        (Saved::Image(m.params), m.metadata, m.extras)
    } else {
        let m = load_model(path).with_context(ctx)?;
        (Saved::Dense(m.params), m.metadata, m.extras)
    };
    let get = |k: &str| -> Result<&String> {
        metadata.get(k).with_context(|| format!("{}: not a stablenet checkpoint (no {k})", path.display()))
    };
    let exp = Experiment::parse(get("experiment")?).with_context(|| format!("{}", path.display()))?;
    let num = |k: &str| -> Result<usize> {
        get(k)?.parse().with_context(|| format!("{}: {k} is not a number", path.display()))
    };
    let method = match metadata.get("run_method") {
        Some(m) => Some(parse_method(m).map_err(|e| anyhow::anyhow!("{}: run_method: {e}", path.display()))?),
        None => None,
    };
    let real = |k: &str| -> Result<f64> {
        get(k)?.parse().with_context(|| format!("{}: {k} is not a number", path.display()))
    };
    // Checkpoints from before the running sums were recorded have none.
    let tally = match metadata.contains_key("checkpoint_seen") {
        true => Some(Tally {
            loss_sum: real("checkpoint_loss_sum")?,
            correct: num("checkpoint_correct")? as u64,
            seen: num("checkpoint_seen")? as u64,
            seconds: real("checkpoint_seconds")?,
        }),
        false => None,
    };
    if let Some(t) = &tally {
        t.check().with_context(|| format!("{}", path.display()))?;
    }
    let r = Resume {
        level: num("checkpoint_level")?,
        epoch: num("checkpoint_epoch")?,
        batch: num("checkpoint_batch")?,
        tally,
        params,
        optim: extras,
        // Checkpoints from before these were recorded have none: the flags' defaults then.
        out: metadata.get("run_out").map(PathBuf::from),
        metrics: metadata.get("run_metrics").map(PathBuf::from),
        method,
        kernels: metadata.get("run_kernels").map(|k| KernelChoice::from_recorded(k)),
        level_kernels: metadata.get("level_kernels").cloned(),
        kernels_by_level: metadata
            .get("kernels_by_level")
            .map(|k| k.split(';').map(str::to_string).collect())
            .unwrap_or_default(),
    };
    Ok((exp, r))
}

pub(crate) struct Metrics(Option<(PathBuf, std::fs::File)>);

impl Metrics {
    pub(crate) fn open(path: Option<&PathBuf>, append: bool) -> Result<Self> {
        let Some(p) = path else { return Ok(Metrics(None)) };
        crate::ensure_parent(p)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(p)
            .with_context(|| format!("opening metrics file {}", p.display()))?;
        Ok(Metrics(Some((p.clone(), f))))
    }

    /// One epoch's line.
    pub(crate) fn write(&mut self, level: usize, depth: usize, epoch: usize, r: &EpochReport) -> Result<()> {
        let Some((p, f)) = &mut self.0 else { return Ok(()) };
        let line = serde_json::json!({
            "epoch": epoch, "level": level, "depth": depth, "steps": r.steps,
            "train_loss": r.train_loss, "train_acc": r.train_acc,
            "val_loss": r.val_loss, "val_acc": r.val_acc,
            "seconds": r.seconds, "lr": r.lr,
        });
        writeln!(f, "{line}")
            .and_then(|_| f.flush())
            .with_context(|| format!("writing metrics file {} (the last checkpoint is intact)", p.display()))
    }
}

/// What the epoch loop of a level needs from a trainer of either kind (dense or image, CPU or
/// GPU): its position, the learning rate, one epoch, and a checkpoint at a position.
pub(crate) trait Level {
    fn position(&self) -> (usize, usize);
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    /// One epoch; `on_batch(done, total, loss)` (loss NaN where unknown) returns false to stop.
    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64) -> bool) -> Result<EpochReport>;
    /// Writes the checkpoint for (level, epochs done, next batch), with the optimiser state.
    fn checkpoint(&self, pos: (usize, usize, usize)) -> Result<()>;
}

/// The epochs of one level, the same for every run: the learning-rate schedule, a progress bar
/// on a terminal, an epoch line, a checkpoint and a metrics line after each epoch; Ctrl-C
/// checkpoints the position inside the epoch and exits with status 130.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_level(
    t: &mut dyn Level,
    plan: &Plan,
    level: usize,
    depth: usize,
    batches: usize,
    val_word: &str,
    metrics: &mut Metrics,
    ckpt: &Path,
) -> Result<()> {
    let stop = stop_flag()?;
    let tty = std::io::stderr().is_terminal();
    while t.position().0 < plan.epochs {
        let epoch = t.position().0;
        t.set_lr(plan.lr(epoch))?;
        let bar = if tty {
            ProgressBar::new(batches as u64).with_style(
                ProgressStyle::with_template("epoch {prefix:>4} [{bar:30}] {pos}/{len} batches  loss {msg}  {eta}")
                    .expect("static template")
                    .progress_chars("=> "),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix((epoch + 1).to_string());
        let r = t.epoch(&mut |done, _, loss| {
            bar.set_position(done as u64);
            bar.set_message(if loss.is_nan() { "-".into() } else { format!("{loss:.4}") });
            !stop.load(Ordering::SeqCst)
        })?;
        bar.finish_and_clear();
        let (e, b) = t.position();
        if !r.complete {
            t.checkpoint((level, e, b))?;
            eprintln!(
                "interrupted in epoch {}, after batch {b}; checkpoint written to {}. Continue with --resume {}",
                level * plan.epochs + e + 1,
                ckpt.display(),
                ckpt.display()
            );
            std::process::exit(130);
        }
        let global = level * plan.epochs + e;
        // Parameters that overflow on the validation set diverged, though the training loss was
        // finite: stop before the checkpoint, which keeps the last good epoch.
        if let Some(l) = r.val_loss {
            diverged_if(l, &format!("the {val_word} loss after epoch {global}"))?;
        }
        let val = match (r.val_loss, r.val_acc) {
            (Some(l), Some(a)) => format!("  {val_word} loss {l:.4}  {val_word} acc {:6.2}%", 100.0 * a),
            _ => String::new(),
        };
        eprintln!(
            "epoch {:>4}  N {:>4}  loss {:.4}  train acc {:6.2}%{val}  lr {:.2e}  {:.2}s",
            global,
            depth,
            r.train_loss,
            100.0 * r.train_acc,
            r.lr,
            r.seconds
        );
        t.checkpoint((level, e, 0))?;
        metrics.write(level, depth, global, &r)?;
        if stop.load(Ordering::SeqCst) {
            eprintln!("interrupted after epoch {global}; continue with --resume {}", ckpt.display());
            std::process::exit(130);
        }
    }
    Ok(())
}

/// An error unless `loss` (named by `what`) is finite: a model that gives an infinite or NaN
/// loss has diverged, and is not written as a checkpoint or as the run's model.
pub(crate) fn diverged_if(loss: f64, what: &str) -> Result<()> {
    if !loss.is_finite() {
        bail!(
            "{what} is {loss}: the training diverged, and the model is not written (the last \
             checkpoint is kept). Lower the learning rate, or use more steps (smaller h) or a stable \
             integrator."
        );
    }
    Ok(())
}

/// A dense trainer of either backend at one level.
struct DenseLevel<'a> {
    t: &'a mut dyn Backend,
    cfg: &'a ModelConfig,
    exp: &'a Experiment,
    files: &'a RunFiles,
    method: Option<GradMethod>,
    kernels: (&'a KernelChoice, Option<&'a str>, &'a [String]),
    train: &'a Dataset,
    val: Option<&'a Dataset>,
}

impl Level for DenseLevel<'_> {
    fn position(&self) -> (usize, usize) {
        self.t.position()
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        Ok(self.t.set_lr(lr)?)
    }
    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64) -> bool) -> Result<EpochReport> {
        Ok(self.t.run_epoch(self.train, self.val, &mut |done, total| on_batch(done, total, f64::NAN))?)
    }
    fn checkpoint(&self, pos: (usize, usize, usize)) -> Result<()> {
        let mut meta = checkpoint_meta(self.exp, self.files, self.method, pos, self.t.tally());
        kernel_meta(&mut meta, self.kernels.0, self.kernels.1, self.kernels.2);
        save(&self.files.checkpoint, self.cfg, &*self.t, &meta)
    }
}

/// What a finished run produced.
pub struct Outcome {
    pub plan: Plan,
    /// Input dimension of the data.
    pub d: usize,
    pub train_acc: f64,
    pub val_acc: Option<f64>,
    pub seconds: f64,
    pub device: String,
}

/// Files a run writes.
pub struct RunFiles {
    pub out: PathBuf,
    pub metrics: Option<PathBuf>,
    pub checkpoint: PathBuf,
}

impl RunFiles {
    /// Before any training: the folders exist (a Ctrl-C in the first epoch writes a
    /// checkpoint), and no output is a folder, an input of the run or another output.
    fn prepare(&self, inputs: &[&Path]) -> Result<()> {
        let mut outputs = vec![self.out.as_path(), self.checkpoint.as_path()];
        outputs.extend(self.metrics.as_deref());
        crate::check_outputs(&outputs, inputs)?;
        outputs.iter().try_for_each(|p| crate::ensure_parent(p))
    }
}

/// Ctrl-C sets this; training stops after the current batch.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handler = stop.clone();
    ctrlc::set_handler(move || handler.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| stop).clone())
}

pub fn run(a: TrainArgs) -> Result<()> {
    // Before the run prints anything: a Ctrl-C after its first line then always checkpoints
    // (scripts and tests signal on a line), never the default kill.
    stop_flag()?;
    let (exp, mut resume) = match &a.resume {
        Some(path) => {
            let (exp, r) = read_resume(path)?;
            if a.flags() != Experiment::default() {
                eprintln!("note: --resume continues the stored experiment; other experiment flags are ignored");
            }
            (exp, Some(r))
        }
        None => {
            let base = match &a.config {
                Some(p) => Experiment::load(p)?,
                None => Experiment::default(),
            };
            (base.over(&a.flags()), None)
        }
    };
    // A resumed run writes where it wrote, with the same gradient method, unless told otherwise.
    let stored = resume.as_mut().map(|r| (r.out.take(), r.metrics.take(), r.method)).unwrap_or_default();
    let out = a.out.clone().or(stored.0).unwrap_or_else(|| PathBuf::from("out/model.safetensors"));
    let files = RunFiles {
        metrics: a.metrics.clone().or(stored.1),
        checkpoint: a.checkpoint.clone().or_else(|| a.resume.clone()).unwrap_or_else(|| checkpoint_beside(&out)),
        out,
    };
    // Before any work: no output may be the experiment file, and a resumed checkpoint may be
    // written over only as the run's checkpoint (the metrics once appended to it).
    let mut outputs = vec![files.out.as_path(), files.checkpoint.as_path()];
    outputs.extend(files.metrics.as_deref());
    crate::check_outputs(&outputs, &a.config.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    if let Some(r) = &a.resume {
        crate::check_outputs(&outputs.iter().copied().filter(|o| *o != files.checkpoint).collect::<Vec<_>>(), &[r])?;
    }
    if resume.is_none() && files.checkpoint.is_file() {
        eprintln!(
            "note: {0} (an earlier run's checkpoint) will be replaced; to continue that run instead: \
             stablenet train --resume {0}",
            files.checkpoint.display()
        );
    }
    // The kernels as asked, else as the resumed run had them; asked anew, the resumed level
    // follows the flags too.
    let asked = match (&a.kernels, a.tune) {
        (Some(k), _) => {
            for part in k.split(';') {
                stablenet_gpu::tune::parse_setting(part.trim(), Default::default()).context("--kernels")?;
            }
            Some(KernelChoice::Pinned(k.clone()))
        }
        (None, true) => Some(KernelChoice::Tune),
        (None, false) => None,
    };
    // A flag that asks for another choice than the checkpoint's applies to the resumed level
    // too; the same choice goes on with the kernels that level had.
    if let Some(r) = resume.as_mut()
        && asked.is_some()
        && asked != r.kernels
        && let Some(k) = r.level_kernels.take()
    {
        eprintln!("note: the resumed level ran the step kernels {k}; it goes on with what the flags ask for");
    }
    let stored_kernels = resume.as_ref().and_then(|r| r.kernels.clone());
    let kernels = asked.or(stored_kernels).unwrap_or(KernelChoice::Default);
    execute(&exp, resume, &files, a.backend.resolve()?, a.method.or(stored.2), kernels)?;
    Ok(())
}

/// Trains an experiment from its start or a checkpoint; writes the model, the checkpoints and
/// the metrics.
pub fn execute(
    exp: &Experiment,
    resume: Option<Resume>,
    files: &RunFiles,
    chosen: Chosen,
    method: Option<GradMethod>,
    kernels: KernelChoice,
) -> Result<Outcome> {
    // Files by absolute path in what the checkpoints and the model store, so that --resume
    // and eval find them from any folder.
    let exp = &exp.with_absolute_files();
    let plan = exp.plan()?;
    match &plan.data {
        DataSource::File { train, val } => {
            files.prepare(&[train.as_path()].into_iter().chain(val.as_deref()).collect::<Vec<_>>())?
        }
        _ => files.prepare(&[])?,
    }
    let untuned = match (&plan.data, &chosen) {
        (DataSource::Images { .. }, _) => "image networks have",
        (_, Chosen::Cpu) => "the CPU backend has",
        _ => "",
    };
    if kernels != KernelChoice::Default && !untuned.is_empty() {
        eprintln!("note: the step-kernel choice (--tune, --kernels) is the GPU's for dense nets; {untuned} none");
    }
    if let DataSource::Images { .. } = plan.data {
        return crate::image::execute(exp, plan, resume, files, chosen);
    }
    let split = load_split(&plan)?;
    let ckpt = &files.checkpoint;
    let mut metrics = Metrics::open(files.metrics.as_ref(), resume.is_some())?;
    let (d, classes) = (split.train.d, split.train.classes.max(split.val.classes));
    let (start_level, mut params) = match &resume {
        Some(r) => {
            if r.level >= plan.levels.len() {
                bail!("checkpoint level {} is beyond the experiment's {} levels", r.level, plan.levels.len());
            }
            let Saved::Dense(p) = &r.params else {
                bail!("the checkpoint holds an image network, the experiment a dense one")
            };
            (r.level, p.clone())
        }
        None => (0, Params::<f32>::init(&plan.model(0, d, classes), plan.seed.wrapping_add(1))),
    };
    eprintln!(
        "training {} (width {}, levels {:?}, T {}) on {} ({} train / {} validation), {}",
        plan.integrator,
        plan.width,
        plan.levels,
        plan.final_time,
        plan.name,
        split.train.len(),
        split.val.len(),
        plan.optimizer
    );
    let start = std::time::Instant::now();
    let mut gpu = match chosen {
        Chosen::Gpu(g) => Some(*g),
        Chosen::Cpu => None,
    };
    // A pinned setting must run every level: known before the first one trains.
    if let (Some(g), KernelChoice::Pinned(k)) = (&gpu, &kernels) {
        for level in start_level..plan.levels.len() {
            let (cfg, k) = (plan.model(level, d, classes), level_setting(k, level, plan.levels.len())?);
            let opts = stablenet_gpu::tune::parse_setting(&k, GpuTrainer::default_options(method))?;
            stablenet_gpu::tune::check_options(g, &cfg, plan.batch_size, opts)
                .with_context(|| format!("--kernels {k} at level {} (N = {})", level + 1, cfg.steps))?;
        }
    }
    let mut by_level = resume.as_ref().map(|r| r.kernels_by_level.clone()).unwrap_or_default();
    let val = (!split.val.is_empty()).then_some(&split.val);
    let mut final_opt = Vec::new();
    let mut device = String::from("CPU");
    for level in start_level..plan.levels.len() {
        let cfg = plan.model(level, d, classes);
        params.check_shape(&cfg).context("checkpoint parameters do not match the experiment")?;
        for w in stablenet_core::stability::warnings(&cfg, &params) {
            eprintln!("warning: {w}");
        }
        let tc = TrainConfig {
            epochs: plan.epochs,
            batch_size: plan.batch_size,
            optimizer: plan.optimizer,
            regularizer: plan.regularizer,
            seed: plan.seed.wrapping_add(2 + 1000 * level as u64),
            method,
        };
        let mut cpu_t = None;
        let mut gpu_t = None;
        // The resumed level runs what its checkpoint says it ran; the others as chosen.
        let resumed = resume.as_ref().filter(|_| level == start_level).and_then(|r| r.level_kernels.clone());
        let pinned = match &kernels {
            KernelChoice::Pinned(k) => resumed.clone().or(Some(level_setting(k, level, plan.levels.len())?)),
            _ => resumed.clone(),
        };
        let mut level_kernels = None;
        let trainer: &mut dyn Backend = match gpu.take() {
            None => {
                // Kept for a later resume on the GPU.
                level_kernels = resumed;
                cpu_t.insert(Trainer::new(cfg.clone(), params.clone(), tc)?)
            }
            Some(g) if pinned.is_some() => {
                let k = pinned.expect("matched");
                let opts = stablenet_gpu::tune::parse_setting(&k, GpuTrainer::default_options(tc.method))
                    .with_context(|| format!("the kernels of level {}", level + 1))?;
                eprintln!("level {}: step kernels {k}", level + 1);
                let t = GpuTrainer::with_options(g, cfg.clone(), &params, tc, split.train.len(), opts)?;
                level_kernels = Some(k);
                gpu_t.insert(t)
            }
            Some(g) if kernels == KernelChoice::Tune => {
                let (t, tuning) = GpuTrainer::tuned(g, cfg.clone(), &params, tc, split.train.len())?;
                eprint!("level {}: {}", level + 1, tuning.table());
                level_kernels = Some(tuning.trials[tuning.chosen].setting.clone());
                gpu_t.insert(t)
            }
            Some(g) => gpu_t.insert(GpuTrainer::new(g, cfg.clone(), &params, tc, split.train.len())?),
        };
        if level == start_level
            && let Some(r) = &resume
        {
            if !r.optim.is_empty() {
                trainer.load_optimizer_state(&r.optim).context("restoring the optimizer from the checkpoint")?;
            }
            trainer.set_position(r.epoch, r.batch);
            trainer.set_tally(r.running_sums(plan.batch_size, split.train.len())?)?;
        }
        device = trainer.device();
        eprintln!("level {}: N = {}, h = {:.4} on {device}", level + 1, cfg.steps, cfg.h());
        let batches = split.train.len().div_ceil(plan.batch_size);
        by_level.resize(level, String::new());
        by_level.push(level_kernels.clone().unwrap_or_default());
        let lk = (&kernels, level_kernels.as_deref(), by_level.as_slice());
        let mut lvl =
            DenseLevel { t: &mut *trainer, cfg: &cfg, exp, files, method, kernels: lk, train: &split.train, val };
        run_level(&mut lvl, &plan, level, cfg.steps, batches, "val", &mut metrics, ckpt)?;
        params = trainer.params()?;
        final_opt = trainer.optimizer_state()?;
        if let Some(g) = gpu_t {
            gpu = Some(g.into_gpu());
        }
        if level + 1 < plan.levels.len() {
            let (next, p) = prolongate(&cfg, &params)?;
            eprintln!("prolongating N = {} -> {} (h/2, T fixed)", cfg.steps, next.steps);
            params = p;
            // The next level's checkpoint starts at its epoch 0 with a fresh optimiser.
            let mut meta = checkpoint_meta(exp, files, method, (level + 1, 0, 0), Tally::default());
            kernel_meta(&mut meta, &kernels, None, &by_level);
            save_fresh(&next, &params, &meta, ckpt)?;
        }
    }
    let cfg = plan.model(plan.levels.len() - 1, d, classes);
    let train_eval = stablenet_core::evaluate(&cfg, &params, &split.train.x, &split.train.labels)?;
    diverged_if(train_eval.loss, "the final model's training loss")?;
    // Evaluated here, not taken from the last epoch, so a resumed run with nothing left to do
    // still reports it.
    let val_acc = match val {
        Some(v) => Some(stablenet_core::evaluate(&cfg, &params, &v.x, &v.labels)?.accuracy),
        None => None,
    };
    let val = val_acc.map(|a| format!("  validation acc {:.2}%", 100.0 * a)).unwrap_or_default();
    println!(
        "{} final: train acc {:.2}%{val}  ({:.1}s)",
        plan.name,
        100.0 * train_eval.accuracy,
        start.elapsed().as_secs_f64()
    );
    let pins = by_level.join(";");
    if kernels == KernelChoice::Tune && by_level.len() == plan.levels.len() && by_level.iter().all(|k| !k.is_empty()) {
        eprintln!("step kernels by level: {pins}; to repeat this run bit for bit: --kernels \"{pins}\"");
    }
    crate::ensure_parent(&files.out)?;
    let mut meta = BTreeMap::new();
    if by_level.iter().any(|k| !k.is_empty()) {
        meta.insert("kernels_by_level".into(), pins);
    }
    meta.insert("experiment".into(), exp.to_toml());
    meta.insert("optimizer".into(), plan.optimizer.to_string());
    // Where the data came from, so eval and plot can regenerate or find it (files by absolute
    // path, from `execute`; the validation file is eval's default).
    meta.insert("dataset".into(), exp.data.clone().unwrap_or_else(|| "peaks".into()));
    if let Some(v) = &exp.val_data {
        meta.insert("val_dataset".into(), v.clone());
    }
    meta.insert("seed".into(), plan.seed.to_string());
    if let Some(v) = val_acc {
        meta.insert("val_acc".into(), v.to_string());
    }
    meta.insert("train_acc".into(), train_eval.accuracy.to_string());
    save_model(&files.out, &cfg, &params, &final_opt, &meta).context("writing the model")?;
    eprintln!("model written to {}", files.out.display());
    Ok(Outcome { plan, d, train_acc: train_eval.accuracy, val_acc, seconds: start.elapsed().as_secs_f64(), device })
}

/// A checkpoint at the start of a level (after prolongation): parameters, no optimiser state.
fn save_fresh(cfg: &ModelConfig, params: &Params<f32>, meta: &BTreeMap<String, String>, path: &Path) -> Result<()> {
    save_model(path, cfg, params, &[], meta).with_context(|| format!("writing checkpoint {}", path.display()))
}
