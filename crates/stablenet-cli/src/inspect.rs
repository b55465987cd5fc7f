//! `stablenet inspect`: per-step stability diagnostics of a model file (MODEL.md section 7).
use anyhow::{Context, Result, bail};
use clap::Args;
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::diagnostics::{Inspection, Linearisation, inspect, mean_states};
use stablenet_core::io::load_data;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model file (safetensors).
    model: PathBuf,
    /// Linearise each step at the mean state of these inputs before that step (a data file
    /// with `x` and `labels`, or peaks, ellipses, swiss-roll); without it, at y = 0 (z = 0).
    #[arg(long)]
    data: Option<String>,
    /// Use at most this many examples of --data.
    #[arg(long, default_value_t = 1000)]
    examples: usize,
    /// Seed of a generated --data set.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A generated set by name, or a data file.
pub fn load_inputs(spec: &str, seed: u64, classes: usize) -> Result<Dataset> {
    if let Ok(s) = spec.parse::<Synthetic>() {
        return Ok(s.generate(seed).train);
    }
    let path = PathBuf::from(spec);
    if !path.exists() {
        bail!("--data {spec:?} is neither a generated data set (peaks, ellipses, swiss-roll) nor an existing file");
    }
    Ok(load_data(&path, Some(classes))?)
}

pub fn run(a: InspectArgs) -> Result<()> {
    anyhow::ensure!(a.examples >= 1, "--examples must be at least 1");
    let model = crate::eval::read_model(&a.model)?;
    let (cfg, p) = (&model.config, model.params.cast::<f64>());
    let states = match &a.data {
        Some(spec) => {
            let data = load_inputs(spec, a.seed, cfg.classes)?;
            if data.d != cfg.d {
                bail!("--data has {} features per example but the model takes d = {}", data.d, cfg.d);
            }
            let n = data.len().min(a.examples);
            Some((mean_states(cfg, &p, &data.x[..n * data.d])?, Linearisation::MeanState { examples: n }))
        }
        None => None,
    };
    let report = inspect(cfg, &p, states.as_ref().map(|(s, l)| (s.as_slice(), l.clone())))
        .with_context(|| format!("inspecting {}", a.model.display()))?;
    if a.json {
        crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        crate::emit(&table(&report))?;
    }
    Ok(())
}

/// The report as a text table with a header and the summary line.
pub fn table(r: &Inspection) -> String {
    let mut s = format!(
        "{} network: width {}, N = {}, T = {}, h = {:.6}{}\nJacobian J_j = {} linearised at {}\ncondition: {}\n\n",
        r.integrator,
        r.width,
        r.steps,
        r.final_time,
        r.h,
        if r.integrator == stablenet_core::Integrator::Antisym { format!(", gamma = {}", r.gamma) } else { "".into() },
        r.jacobian,
        r.linearised_at,
        r.condition
    );
    // hamiltonian's criterion is h s_max itself: no second column for it.
    let extra = r.integrator != stablenet_core::Integrator::Hamiltonian;
    s += &format!("{:>5}  {:>12}  {:>12}  {:>10}  {:>9}", "step", "max Re λ(J)", "max |Im λ|", "s_max(K)", "h s_max");
    if extra {
        s += &format!("  {:>15}", r.criterion);
    }
    s += "  stable\n";
    for d in &r.per_step {
        s += &format!(
            "{:>5}  {:>12}  {:>12}  {:>10.4}  {:>9.4}",
            d.step,
            sci(d.max_re),
            sci(d.max_abs_im),
            d.s_max,
            d.h_s_max
        );
        if extra {
            s += &format!("  {:>15.4}", d.criterion);
        }
        s += if d.stable { "  yes\n" } else { "  NO\n" };
    }
    s += &format!("\n{}\n", r.summary);
    s
}

/// Scientific notation with a signed two-digit exponent: -1.234e-07.
fn sci(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let t = format!("{v:.3e}");
    match t.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use stablenet_core::{Activation, Integrator, ModelConfig, Params};

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: InspectArgs,
    }

    #[test]
    fn inspect_reads_a_model_and_flags_unstable_steps() {
        let cfg = ModelConfig {
            d: 2,
            width: 3,
            steps: 4,
            final_time: 1.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 5,
        };
        let mut p = Params::<f32>::init(&cfg, 1);
        p.k[..9].copy_from_slice(&[9.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]); // h s_max(K_0) = 2.25
        let path = std::env::temp_dir().join(format!("stablenet-inspect-{}.safetensors", std::process::id()));
        stablenet_core::io::save_model(&path, &cfg, &p, &[], &Default::default()).unwrap();
        let m = path.to_str().unwrap();
        for extra in [&[][..], &["--data", "peaks", "--examples", "50"][..], &["--json"][..]] {
            run(Cmd::parse_from(["inspect", m].iter().chain(extra)).a).unwrap();
        }
        let r = inspect(&cfg, &p.cast::<f64>(), None).unwrap();
        let t = table(&r);
        assert!(t.contains("  NO\n") && t.contains("3/4 steps") && t.contains("UNSTABLE"), "{t}");
        assert!(t.contains("h s_max(K) < 2") && t.contains("y = 0"), "{t}");
        let err = run(Cmd::parse_from(["inspect", m, "--data", "/nonexistent"]).a).unwrap_err();
        assert!(err.to_string().contains("neither a generated data set"), "{err}");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn scientific_notation_has_a_signed_exponent() {
        assert_eq!(sci(-1.23456e-7), "-1.235e-07");
        assert_eq!(sci(2.0), "2.000e+00");
        assert_eq!(sci(f64::NEG_INFINITY), "-inf");
    }
}
