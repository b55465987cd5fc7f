//! `stablenet reproduce`: runs every experiment in `experiments/`, writes each run's model,
//! metrics and pictures, and a markdown table of the results.
use crate::train::{KernelChoice, RunFiles, execute};
use crate::{BackendArg, Chosen};
use anyhow::{Context, Result};
use clap::Args;
use stablenet_core::experiment::Experiment;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Folder of experiment files (*.toml).
    #[arg(long, default_value = "experiments")]
    experiments: PathBuf,
    /// Where to write the runs, the pictures and RESULTS.md.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Only experiments whose file name contains this.
    #[arg(long)]
    only: Option<String>,
    /// GPU: tune the step kernels before each level of each experiment (as `train --tune`).
    #[arg(long)]
    tune: bool,
    #[command(flatten)]
    backend: BackendArg,
}

pub fn run(a: ReproduceArgs) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.experiments)
        .with_context(|| format!("reading {}", a.experiments.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            a.only.as_ref().is_none_or(|o| p.file_name().is_some_and(|f| f.to_string_lossy().contains(o.as_str())))
        })
        .collect();
    files.sort();
    match &a.only {
        Some(o) => {
            anyhow::ensure!(!files.is_empty(), "no experiment file in {} matches --only {o}", a.experiments.display())
        }
        None => anyhow::ensure!(!files.is_empty(), "no experiment files in {}", a.experiments.display()),
    }
    // Every file read before the first run: a typo in the last one once surfaced only after
    // the others had trained.
    let experiments = files.iter().map(|p| Experiment::load(p).map(|e| (p, e))).collect::<Result<Vec<_>, _>>()?;
    crate::ensure_dir(&a.out)?;
    let mut table = String::from(
        "| experiment | integrator | levels | validation acc | train acc | seconds | device | pictures |\n|---|---|---|---|---|---|---|---|\n",
    );
    // Rewritten after every experiment, so that a run that fails later keeps the rows before it.
    let out = a.out.join("RESULTS.md");
    let save = |table: &str| {
        let md = format!(
            "# Results of `stablenet reproduce`\n\nEvery experiment of `{}`, trained from scratch; validation accuracy on the \
             held-out set of each data set (MODEL.md section 8). Seconds are wall time of the whole run.\n\n{table}",
            a.experiments.display()
        );
        stablenet_core::io::write_atomic(&out, md.as_bytes())
    };
    for (path, exp) in &experiments {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = a.out.join(&name);
        crate::ensure_dir(&dir)?;
        let run = RunFiles {
            out: dir.join("model.safetensors"),
            metrics: Some(dir.join("metrics.jsonl")),
            checkpoint: dir.join("model.ckpt.safetensors"),
        };
        eprintln!("== {name}");
        let chosen: Chosen = a.backend.resolve()?;
        let o = execute(exp, None, &run, chosen, None, if a.tune { KernelChoice::Tune } else { KernelChoice::Default })
            .with_context(|| format!("experiment {}", path.display()))?;
        let pictures = pictures(&run, o.d, &dir).with_context(|| format!("pictures of {name}"))?;
        let links: Vec<String> = pictures
            .iter()
            .filter_map(|p| p.file_name())
            .map(|f| format!("[{0}]({name}/{0})", f.to_string_lossy()))
            .collect();
        let _ = writeln!(
            table,
            "| {name} | {} | {:?} | {:.2}% | {:.2}% | {:.1} | {} | {} |",
            o.plan.integrator,
            o.plan.levels,
            100.0 * o.val_acc.unwrap_or(f64::NAN),
            100.0 * o.train_acc,
            o.seconds,
            o.device,
            links.join(" ")
        );
        save(&table)?;
    }
    crate::emit(&format!("{table}\n"))?;
    eprintln!("results written to {}", out.display());
    Ok(())
}

/// Decision regions (2-D inputs), the flow of the features, and the training curves of a run,
/// drawn by the `plot` commands.
fn pictures(run: &RunFiles, d: usize, dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    use clap::Parser;
    let model = run.out.to_string_lossy().into_owned();
    let metrics = run.metrics.as_ref().map(|m| m.to_string_lossy().into_owned()).unwrap_or_default();
    let mut jobs: Vec<(&str, Vec<String>)> = Vec::new();
    if crate::image::is_image_file(&run.out)? {
        jobs.push(("misclassified.png", vec!["misclassified".into(), "--model".into(), model.clone()]));
    } else {
        if d == 2 {
            jobs.push(("regions.png", vec!["regions".into(), "--model".into(), model.clone()]));
        }
        jobs.push(("flow.png", vec!["flow".into(), "--model".into(), model.clone()]));
    }
    jobs.push(("curves.png", vec!["curves".into(), "--metrics".into(), metrics]));
    let mut out = Vec::new();
    for (file, args) in jobs {
        let path = dir.join(file);
        let argv = ["stablenet", "plot"]
            .into_iter()
            .map(String::from)
            .chain(args)
            .chain(["--out".into(), path.to_string_lossy().into_owned()]);
        let cli = crate::Cli::try_parse_from(argv)?;
        crate::dispatch(cli.command)?;
        out.push(path);
    }
    Ok(out)
}
