//! `stablenet eval`: loss, accuracy, per-class accuracy and the confusion matrix of a model on a
//! generated data set or a safetensors data file. Also home of the data-source handling that
//! `plot` shares.
use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::io::{ModelFile, load_data, load_model};
use stablenet_core::{ModelConfig, evaluate, logits};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
}

/// Where labelled examples come from: `--data`, `--seed` and `--split`.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// peaks, ellipses, swiss-roll (generated with --seed) or a safetensors data file
    /// (`x` f32 [n, d], `labels` [n]). Default: the data set named in the model's metadata.
    #[arg(long)]
    pub data: Option<String>,
    /// Seed of the generated data (default: the seed the model was trained with, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which half of a generated data set, or of the data files a model was trained on
    /// (default val; for images val is the test set).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Image models: folder of the MNIST / Fashion-MNIST IDX files (default data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A labelled data set and a one-line description of where it came from.
pub struct Labelled {
    pub set: Dataset,
    pub what: String,
}

impl DataArgs {
    /// Generates or loads the data and checks it against the model (d and the classes).
    pub fn load(&self, model: &ModelFile, model_path: &Path) -> Result<Labelled> {
        let meta = |k: &str| model.metadata.get(k).cloned();
        // A model trained on data files names them: the validation file by default, the
        // training file with --split train (or when there was no validation file).
        let file_split = self.data.is_none() && meta("dataset").is_some_and(|d| d.parse::<Synthetic>().is_err());
        let name = match (&self.data, meta("dataset")) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) if file_split => match (self.split, meta("val_dataset")) {
                (Some(SplitArg::Train), _) | (None, None) => d,
                (_, Some(v)) => v,
                (Some(SplitArg::Val), None) => bail!(
                    "{}: the model was trained on {d} without a validation file; pass --data FILE or --split train",
                    model_path.display()
                ),
            },
            (None, Some(d)) => d,
            (None, None) => bail!(
                "{}: no --data given and the model names no data set; pass --data peaks|ellipses|swiss-roll|FILE",
                model_path.display()
            ),
        };
        let cfg = &model.config;
        let seed = self.seed.or_else(|| model.metadata.get("seed").and_then(|s| s.parse().ok())).unwrap_or(1);
        let out = if let Ok(generator) = name.parse::<Synthetic>() {
            let split = generator.generate(seed);
            let (set, half) = match self.split.unwrap_or(SplitArg::Val) {
                SplitArg::Train => (split.train, "training"),
                SplitArg::Val => (split.val, "validation"),
            };
            let what = format!("{generator} ({half} split, seed {seed}), {} examples", set.len());
            Labelled { set, what }
        } else {
            let path = PathBuf::from(&name);
            if !path.exists() {
                bail!("--data {name}: neither a generated data set (peaks, ellipses, swiss-roll) nor an existing file");
            }
            if self.split.is_some() && !file_split {
                bail!(
                    "--split applies to generated data and a model's own data files; {name} is a file, evaluated whole"
                );
            }
            let set = load_data(&path, None)?;
            let what = format!("{}, {} examples", path.display(), set.len());
            Labelled { set, what }
        };
        check_against(cfg, &out.set, &name)?;
        Ok(out)
    }
}

fn check_against(cfg: &ModelConfig, set: &Dataset, name: &str) -> Result<()> {
    if set.d != cfg.d {
        bail!("{name}: examples have {} features but the model's opening layer takes d = {}", set.d, cfg.d);
    }
    if let Some(i) = set.labels.iter().position(|&l| l as usize >= cfg.classes) {
        bail!(
            "{name}: label {} of example {i} is outside the model's {} classes (is this the data set the model \
             was trained on?)",
            set.labels[i],
            cfg.classes
        );
    }
    Ok(())
}

/// Index of the largest value; the first on ties (as the library's accuracy counts).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Loads a model; the library's message already names the file and the cause.
/// A dense model; an image model is named as such, not as a file missing the dense tensors.
pub fn read_model(path: &Path) -> Result<ModelFile> {
    load_model(path).map_err(|e| {
        if crate::image::is_image_file(path).unwrap_or(false) {
            anyhow!(
                "{} holds an image network; this command takes the dense networks of the 2-D data and data \
                 files (image models: stablenet eval, stablenet plot misclassified)",
                path.display()
            )
        } else {
            anyhow!("cannot read the model: {e}")
        }
    })
}

pub fn describe_model(cfg: &ModelConfig) -> String {
    format!(
        "{} (d {}, width {}, N {}, T {}, {}, {} classes)",
        cfg.integrator, cfg.d, cfg.width, cfg.steps, cfg.final_time, cfg.activation, cfg.classes
    )
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file (safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    if crate::image::is_image_file(&a.model)? {
        return crate::image::eval(&a.model, &a.data, a.json);
    }
    let model = read_model(&a.model)?;
    let cfg = &model.config;
    let data = a.data.load(&model, &a.model)?;
    let set = &data.set;
    let ev = evaluate(cfg, &model.params, &set.x, &set.labels)?;
    let z = logits(cfg, &model.params, &set.x)?;
    let predicted: Vec<usize> = z.chunks_exact(cfg.classes).map(argmax).collect();
    let report = Report { model: &a.model, describe: describe_model(cfg), what: &data.what, loss: ev.loss };
    report.print(&predicted, &set.labels, cfg.classes, a.json)?;
    Ok(())
}

/// What `eval` prints about any model: loss, accuracy, per-class accuracy, confusion matrix.
pub struct Report<'a> {
    pub model: &'a Path,
    pub describe: String,
    pub what: &'a str,
    pub loss: f64,
}

impl Report<'_> {
    pub fn print(&self, predicted: &[usize], labels: &[u32], c: usize, json: bool) -> Result<()> {
        let mut s = String::new();
        // confusion[true][predicted]
        let mut confusion = vec![vec![0usize; c]; c];
        for (&p, &l) in predicted.iter().zip(labels) {
            confusion[l as usize][p] += 1;
        }
        let n = labels.len();
        let accuracy = trace(&confusion) as f64 / n.max(1) as f64;
        let support: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
        let per_class: Vec<Option<f64>> =
            (0..c).map(|k| (support[k] > 0).then(|| confusion[k][k] as f64 / support[k] as f64)).collect();
        if json {
            let v = serde_json::json!({
                "model": self.model.display().to_string(),
                "data": self.what,
                "n": n,
                "loss": self.loss,
                "accuracy": accuracy,
                "per_class_accuracy": per_class,
                "support": support,
                "confusion": confusion,
            });
            return crate::emit(&format!("{v}\n"));
        }
        s += &format!("model: {} {}\n", self.model.display(), self.describe);
        s += &format!("data:  {}\n", self.what);
        s += &format!("loss {:.4}   accuracy {:.2}%   ({} of {n})\n\n", self.loss, 100.0 * accuracy, trace(&confusion));
        s += "class  examples  correct  accuracy\n";
        for k in 0..c {
            let acc = per_class[k].map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
            s += &format!("{k:>5}  {:>8}  {:>7}  {acc:>8}\n", support[k], confusion[k][k]);
        }
        s += "\nconfusion matrix (rows: true class, columns: predicted class)\n";
        let cell = confusion.iter().flatten().max().map_or(1, |m| m.to_string().len()).max(c.to_string().len()) + 1;
        s += &format!("{:>6}", "");
        (0..c).for_each(|k| s += &format!("{k:>cell$}"));
        s += "\n";
        for (k, row) in confusion.iter().enumerate() {
            s += &format!("{k:>6}");
            row.iter().for_each(|v| s += &format!("{v:>cell$}"));
            s += "\n";
        }
        crate::emit(&s)
    }
}

fn trace(m: &[Vec<usize>]) -> usize {
    m.iter().enumerate().map(|(i, r)| r[i]).sum()
}
