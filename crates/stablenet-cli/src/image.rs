//! Training image networks (docs/IMAGES.md) from `stablenet train`: MNIST or Fashion-MNIST,
//! level by level (depth prolongation of every stage, MODEL.md section 6), with the progress,
//! metrics, atomic checkpoints, `--resume` and Ctrl-C handling of the dense runs.
use crate::Chosen;
use crate::train::{Level, Metrics, Outcome, Resume, RunFiles, Saved, checkpoint_meta, diverged_if, run_level};
use anyhow::{Context, Result, bail};
use stablenet_core::data::{Dataset, ImageSet, ImageSplit, load_image_set};
use stablenet_core::experiment::{DataSource, Experiment, Plan};
use stablenet_core::image::{ImageConfig, ImageEval, ImageParams, ImageTrainer};
use stablenet_core::io::{Tensor, save_image_model};
use stablenet_core::optim::OptimizerKind;
use stablenet_core::train::{EpochReport, Tally};
use stablenet_gpu::{Gpu, GpuImageTrainer};
use std::collections::BTreeMap;
use std::path::Path;

/// The first `limit` images of a set (all without a limit).
fn first(set: Dataset, limit: Option<usize>) -> Dataset {
    match limit {
        Some(n) if n < set.len() => set.subset(&(0..n).collect::<Vec<_>>()),
        _ => set,
    }
}

/// Training and test images of an experiment.
pub fn load(plan: &Plan) -> Result<(ImageSet, Dataset, Dataset)> {
    let DataSource::Images { set, dir, train_limit, val_limit } = &plan.data else { bail!("not image data") };
    let train = first(load_image_set(dir, *set, ImageSplit::Train)?, *train_limit);
    let test = first(load_image_set(dir, *set, ImageSplit::Test)?, *val_limit);
    Ok((*set, train, test))
}

/// The trainer of one level: the CPU reference or the GPU (same batches, optimiser and
/// checkpoint tensors).
enum Trainer {
    Cpu(Box<ImageTrainer>),
    Gpu(Box<GpuImageTrainer>),
}

impl Trainer {
    fn new(
        gpu: Option<&Gpu>,
        cfg: &ImageConfig,
        params: ImageParams<f32>,
        kind: OptimizerKind,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self> {
        Ok(match gpu {
            Some(g) => Trainer::Gpu(Box::new(GpuImageTrainer::new(g, cfg, params, kind, batch_size, seed)?)),
            None => Trainer::Cpu(Box::new(ImageTrainer::new(cfg, params, kind, batch_size, seed)?)),
        })
    }

    fn device(&self) -> String {
        match self {
            Trainer::Cpu(t) => t.device(),
            Trainer::Gpu(t) => t.device(),
        }
    }

    fn position(&self) -> (usize, usize) {
        match self {
            Trainer::Cpu(t) => t.position(),
            Trainer::Gpu(t) => t.position(),
        }
    }

    fn set_position(&mut self, epoch: usize, batch: usize) {
        match self {
            Trainer::Cpu(t) => t.set_position(epoch, batch),
            Trainer::Gpu(t) => t.set_position(epoch, batch),
        }
    }

    fn tally(&self) -> Tally {
        match self {
            Trainer::Cpu(t) => t.tally(),
            Trainer::Gpu(t) => t.tally(),
        }
    }

    fn set_tally(&mut self, tally: Tally) -> Result<()> {
        match self {
            Trainer::Cpu(t) => t.set_tally(tally)?,
            Trainer::Gpu(t) => t.set_tally(tally)?,
        }
        Ok(())
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        match self {
            Trainer::Cpu(t) => t.set_lr(lr)?,
            Trainer::Gpu(t) => t.set_lr(lr)?,
        }
        Ok(())
    }

    fn run_epoch(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        on_batch: impl FnMut(usize, usize, f64) -> bool,
    ) -> Result<EpochReport> {
        Ok(match self {
            Trainer::Cpu(t) => t.run_epoch(train, val, on_batch)?,
            Trainer::Gpu(t) => t.run_epoch(train, val, on_batch)?,
        })
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<ImageEval> {
        Ok(match self {
            Trainer::Cpu(t) => t.evaluate(data)?,
            Trainer::Gpu(t) => t.evaluate(data)?,
        })
    }

    fn params(&self) -> Result<ImageParams<f32>> {
        Ok(match self {
            Trainer::Cpu(t) => t.params.clone(),
            Trainer::Gpu(t) => t.params()?,
        })
    }

    fn optimizer_state(&self) -> Result<Vec<Tensor>> {
        Ok(match self {
            Trainer::Cpu(t) => t.optimizer_state(),
            Trainer::Gpu(t) => t.optimizer_state()?,
        })
    }

    fn load_optimizer_state(&mut self, tensors: &[Tensor]) -> Result<()> {
        match self {
            Trainer::Cpu(t) => t.load_optimizer_state(tensors)?,
            Trainer::Gpu(t) => t.load_optimizer_state(tensors)?,
        }
        Ok(())
    }
}

fn save(
    files: &RunFiles,
    cfg: &ImageConfig,
    t: &Trainer,
    exp: &Experiment,
    pos: (usize, usize, usize),
    optim: bool,
) -> Result<()> {
    let extras: Vec<Tensor> = if optim { t.optimizer_state()? } else { Vec::new() };
    let path = &files.checkpoint;
    save_image_model(path, cfg, &t.params()?, &extras, &checkpoint_meta(exp, files, None, pos, t.tally()))
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// An image trainer at one level.
struct ImageLevel<'a> {
    t: &'a mut Trainer,
    cfg: &'a ImageConfig,
    exp: &'a Experiment,
    files: &'a RunFiles,
    train: &'a Dataset,
    test: &'a Dataset,
}

impl Level for ImageLevel<'_> {
    fn position(&self) -> (usize, usize) {
        self.t.position()
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.t.set_lr(lr)
    }
    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64) -> bool) -> Result<EpochReport> {
        self.t.run_epoch(self.train, Some(self.test), on_batch)
    }
    fn checkpoint(&self, pos: (usize, usize, usize)) -> Result<()> {
        save(self.files, self.cfg, self.t, self.exp, pos, true)
    }
}

pub fn execute(
    exp: &Experiment,
    plan: Plan,
    resume: Option<Resume>,
    files: &RunFiles,
    chosen: Chosen,
) -> Result<Outcome> {
    let gpu = match chosen {
        Chosen::Gpu(g) => Some(g),
        Chosen::Cpu => None,
    };
    let (set, train, test) = load(&plan)?;
    let ckpt = &files.checkpoint;
    let mut metrics = Metrics::open(files.metrics.as_ref(), resume.is_some())?;
    let (start_level, mut params) = match &resume {
        Some(r) => {
            let Saved::Image(p) = &r.params else {
                bail!("the checkpoint holds a dense network, the experiment images")
            };
            if r.level >= plan.levels.len() {
                bail!("checkpoint level {} is beyond the experiment's {} levels", r.level, plan.levels.len());
            }
            (r.level, p.clone())
        }
        None => (0, ImageParams::<f32>::init(&plan.image_model(0), plan.seed.wrapping_add(1))),
    };
    eprintln!(
        "training {} image network (channels {:?}, steps per stage {:?}, T {}) on {} ({} train / {} test images), {}",
        plan.integrator,
        plan.channels,
        plan.levels,
        plan.final_time,
        set.title(),
        train.len(),
        test.len(),
        plan.optimizer
    );
    let start = std::time::Instant::now();
    let mut device = String::new();
    let mut final_opt = Vec::new();
    let mut trainer = None;
    for level in start_level..plan.levels.len() {
        let cfg = plan.image_model(level);
        params.check_shape(&cfg).context("checkpoint parameters do not match the experiment")?;
        let seed = plan.seed.wrapping_add(2 + 1000 * level as u64);
        trainer = None; // free the previous level's device buffers first
        let t =
            trainer.insert(Trainer::new(gpu.as_deref(), &cfg, params.clone(), plan.optimizer, plan.batch_size, seed)?);
        if level == start_level
            && let Some(r) = &resume
        {
            if !r.optim.is_empty() {
                t.load_optimizer_state(&r.optim).context("restoring the optimizer from the checkpoint")?;
            }
            t.set_position(r.epoch, r.batch);
            t.set_tally(r.running_sums(plan.batch_size, train.len())?)?;
        }
        device = t.device();
        eprintln!("level {}: N = {} per stage, h = {:.4} on {device}", level + 1, cfg.steps, cfg.h());
        let batches = train.len().div_ceil(plan.batch_size);
        let mut lvl = ImageLevel { t, cfg: &cfg, exp, files, train: &train, test: &test };
        run_level(&mut lvl, &plan, level, cfg.steps, batches, "test", &mut metrics, ckpt)?;
        params = t.params()?;
        final_opt = t.optimizer_state()?;
        if level + 1 < plan.levels.len() {
            let (next, p) = params.prolongate(&cfg);
            eprintln!("prolongating N = {} -> {} per stage (h/2, T fixed)", cfg.steps, next.steps);
            params = p;
            // The next level's checkpoint starts at its epoch 0 with a fresh optimiser.
            save_image_model(
                ckpt,
                &next,
                &params,
                &[],
                &checkpoint_meta(exp, files, None, (level + 1, 0, 0), Tally::default()),
            )
            .with_context(|| format!("writing checkpoint {}", ckpt.display()))?;
        }
    }
    let cfg = plan.image_model(plan.levels.len() - 1);
    drop(trainer);
    let mut t = Trainer::new(gpu.as_deref(), &cfg, params.clone(), plan.optimizer, plan.batch_size, plan.seed)?;
    let test_eval = t.evaluate(&test)?;
    let train_eval = t.evaluate(&train)?;
    diverged_if(train_eval.loss, "the final model's training loss")?;
    diverged_if(test_eval.loss, "the final model's test loss")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{} final: train acc {:.2}%  test acc {:.2}%  ({seconds:.1}s)",
        plan.name,
        100.0 * train_eval.accuracy,
        100.0 * test_eval.accuracy
    );
    crate::ensure_parent(&files.out)?;
    let mut meta = BTreeMap::new();
    meta.insert("experiment".into(), exp.to_toml());
    meta.insert("optimizer".into(), plan.optimizer.to_string());
    meta.insert("dataset".into(), set.name().to_string());
    meta.insert("seed".into(), plan.seed.to_string());
    meta.insert("val_acc".into(), test_eval.accuracy.to_string());
    meta.insert("train_acc".into(), train_eval.accuracy.to_string());
    meta.insert("device".into(), device.clone());
    save_image_model(&files.out, &cfg, &params, &final_opt, &meta).context("writing the model")?;
    eprintln!("model written to {}", files.out.display());
    Ok(Outcome {
        plan,
        d: cfg.input.len(),
        train_acc: train_eval.accuracy,
        val_acc: Some(test_eval.accuracy),
        seconds,
        device,
    })
}

/// Whether a model file holds an image network (read from its metadata).
pub fn is_image_file(path: &Path) -> Result<bool> {
    let (_, meta) =
        stablenet_core::io::load_tensors(path).map_err(|e| anyhow::anyhow!("cannot read the model: {e}"))?;
    Ok(stablenet_core::io::is_image_model(&meta))
}

/// An image model and the labelled images `--data`/`--split`/`--data-dir` (or the model's
/// metadata) name: the test set by default.
pub fn model_and_images(
    path: &Path,
    data: &crate::eval::DataArgs,
) -> Result<(stablenet_core::io::ImageModelFile, Dataset, String)> {
    let model =
        stablenet_core::io::load_image_model(path).map_err(|e| anyhow::anyhow!("cannot read the model: {e}"))?;
    // A checkpoint names its data only inside the experiment it stores.
    let experiment = model.metadata.get("experiment").and_then(|t| Experiment::parse(t).ok());
    let stored = model.metadata.get("dataset").cloned().or_else(|| experiment.as_ref().and_then(|e| e.data.clone()));
    let Some(name) = data.data.clone().or(stored) else {
        bail!("{}: no --data given and the model names no data set; pass --data mnist|fashion-mnist", path.display())
    };
    let set: ImageSet = name.parse()?;
    // The folder the model was trained from, unless --data-dir says otherwise.
    let trained_dir = experiment.and_then(|e| e.data_dir);
    let dir = data.data_dir.clone().or(trained_dir.map(Into::into)).unwrap_or_else(|| "data".into());
    let split = match data.split {
        Some(crate::eval::SplitArg::Train) => ImageSplit::Train,
        _ => ImageSplit::Test,
    };
    let images = load_image_set(&dir, set, split)?;
    if images.d != model.config.input.len() {
        bail!("{name}: images have {} values, the model takes {}", images.d, model.config.input.len());
    }
    let what = format!(
        "{} {} set, {} images",
        set.title(),
        if split == ImageSplit::Train { "training" } else { "test" },
        images.len()
    );
    Ok((model, images, what))
}

pub fn describe(cfg: &ImageConfig) -> String {
    format!(
        "image network {} (channels {:?}, N {} per stage, T {}, {}, {} classes)",
        cfg.integrator, cfg.channels, cfg.steps, cfg.final_time, cfg.activation, cfg.classes
    )
}

/// `stablenet eval` of an image model.
pub fn eval(path: &Path, data: &crate::eval::DataArgs, json: bool) -> Result<()> {
    let (model, images, what) = model_and_images(path, data)?;
    let net = stablenet_core::image::ImageNet::new(&model.config)?;
    let ev = net.evaluate(&model.params, &images.x, &images.labels, 0)?;
    let predicted: Vec<usize> = ev.predictions.iter().map(|&p| p as usize).collect();
    let report = crate::eval::Report { model: path, describe: describe(&model.config), what: &what, loss: ev.loss };
    report.print(&predicted, &images.labels, model.config.classes, json)?;
    Ok(())
}
