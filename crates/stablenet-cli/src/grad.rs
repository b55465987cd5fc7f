//! `stablenet grad`: the exact gradient of the mean cross-entropy (no regulariser) of a model
//! on a batch. This is how anyone checks the engine against PyTorch autograd.
use crate::{BackendArg, Chosen};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use stablenet_core::io::{Tensor, load_data, save_tensors};
use stablenet_core::{GradMethod, Params, Real, loss_grad};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    F64,
}

#[derive(Args, Debug)]
pub struct GradArgs {
    /// Model file (safetensors, see the README's model-file convention).
    #[arg(long)]
    model: PathBuf,
    /// Batch: `x` f32 [n, d] and `labels` i64/i32/u8 [n].
    #[arg(long)]
    data: PathBuf,
    /// Output: one gradient tensor per model tensor, same names and shapes, plus `loss`.
    #[arg(long)]
    out: PathBuf,
    /// Arithmetic of the CPU computation (default f64; the GPU computes in f32; the file is
    /// f32 either way).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// How the adjoint gets its states: stored, reverse (hamiltonian/leapfrog), or
    /// checkpoint:K.
    #[arg(long, default_value = "stored", value_parser = parse_method)]
    method: GradMethod,
    #[command(flatten)]
    backend: BackendArg,
}

/// The inverse of [`parse_method`] (checkpoints record the method this way).
pub fn method_name(m: GradMethod) -> String {
    match m {
        GradMethod::Stored => "stored".into(),
        GradMethod::Reverse => "reverse".into(),
        GradMethod::Checkpoint(k) => format!("checkpoint:{k}"),
    }
}

pub fn parse_method(s: &str) -> Result<GradMethod, String> {
    match s {
        "stored" => Ok(GradMethod::Stored),
        "reverse" => Ok(GradMethod::Reverse),
        _ => s
            .strip_prefix("checkpoint:")
            .and_then(|k| k.parse().ok())
            .filter(|k| *k > 0)
            .map(GradMethod::Checkpoint)
            .ok_or_else(|| format!("unknown gradient method {s:?}: use stored, reverse or checkpoint:K (K >= 1)")),
    }
}

pub fn run(a: GradArgs) -> Result<()> {
    crate::check_outputs(&[&a.out], &[&a.model, &a.data])?;
    let backend = a.backend.resolve()?;
    let model = crate::eval::read_model(&a.model)?;
    let data = load_data(&a.data, Some(model.config.classes))?;
    if data.d != model.config.d {
        anyhow::bail!(
            "{}: x has {} features per example but the model's opening layer takes d = {}",
            a.data.display(),
            data.d,
            model.config.d
        );
    }
    let (loss, grad) = match (backend, a.precision) {
        (Chosen::Gpu(_), Some(Precision::F64)) => {
            bail!("the GPU computes in f32; drop --precision f64 or use --backend cpu")
        }
        (Chosen::Gpu(gpu), _) => {
            if a.method != GradMethod::Stored {
                eprintln!("note: the GPU picks its own memory strategy; --method applies to the CPU");
            }
            let mut net = stablenet_gpu::GpuNet::new(*gpu, &model.config, data.len(), data.len(), None)?;
            net.set_params(&model.params)?;
            net.set_data(&data)?;
            net.loss_grad(0, data.len())?
        }
        (Chosen::Cpu, Some(Precision::F32)) => compute::<f32>(&model.config, &model.params, &data, a.method)?,
        (Chosen::Cpu, _) => compute::<f64>(&model.config, &model.params.cast(), &data, a.method)?,
    };
    let mut tensors: Vec<Tensor> =
        grad.groups().iter().map(|(name, v)| Tensor::new(*name, grad.group_shape(name), v.to_vec())).collect();
    tensors.push(Tensor::new("loss", vec![], vec![loss]));
    let mut meta = BTreeMap::new();
    meta.insert("n".to_string(), data.len().to_string());
    crate::ensure_parent(&a.out)?;
    save_tensors(&a.out, &tensors, &meta).with_context(|| "writing the gradient file")?;
    eprintln!("loss {loss:.7} over {} examples; gradients written to {}", data.len(), a.out.display());
    Ok(())
}

fn compute<T: Real>(
    cfg: &stablenet_core::ModelConfig,
    p: &Params<T>,
    data: &stablenet_core::data::Dataset,
    method: GradMethod,
) -> Result<(f32, Params<f32>)> {
    let lg = loss_grad(cfg, p, &data.x, &data.labels, method)?;
    Ok((lg.loss.f64() as f32, lg.grad.cast()))
}
