//! Model files: the six parameter tensors, the configuration in metadata, and extras.
use super::raw::{self, F32Ref, RawFile};
use super::{Tensor, bare, write_atomic};
use crate::config::{Activation, Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::params::{GROUP_NAMES, Params};
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata keys that carry the configuration; all other keys are the caller's.
pub const RESERVED_KEYS: [&str; 4] = ["integrator", "final_time", "activation", "gamma"];

/// Everything a model file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    pub config: ModelConfig,
    pub params: Params<f32>,
    /// Tensors other than the six model tensors (e.g. optimiser state), sorted by name.
    pub extras: Vec<Tensor>,
    /// Metadata keys other than [`RESERVED_KEYS`].
    pub metadata: BTreeMap<String, String>,
}

/// Writes a model file. Refuses non-finite parameters (the loader would reject the file),
/// extras named like a model tensor and extra metadata keys that are reserved.
pub fn save_model(
    path: &Path,
    cfg: &ModelConfig,
    params: &Params<f32>,
    extras: &[Tensor],
    extra_meta: &BTreeMap<String, String>,
) -> Result<()> {
    let fail = |m: String| Err(Error::file(path, format!("cannot save model: {m}")));
    cfg.validate().or_else(|e| fail(bare(e)))?;
    params.check_shape(cfg).or_else(|e| fail(bare(e)))?;
    if let Some(name) = params.first_non_finite() {
        return fail(format!("{name} holds a NaN or infinity (has training diverged?)"));
    }
    if let Some(t) = extras.iter().find(|t| GROUP_NAMES.contains(&t.name.as_str())) {
        return fail(format!("extra tensor {} collides with a model tensor", t.name));
    }
    if let Some(k) = extra_meta.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
        return fail(format!("extra metadata key {k:?} is reserved for the configuration"));
    }
    let mut meta = extra_meta.clone();
    meta.insert("integrator".into(), cfg.integrator.name().into());
    meta.insert("activation".into(), cfg.activation.name().into());
    // `{}` on f64 prints the shortest decimal that parses back to the same bits.
    meta.insert("final_time".into(), format!("{}", cfg.final_time));
    meta.insert("gamma".into(), format!("{}", cfg.gamma));

    let mut tensors = Vec::with_capacity(GROUP_NAMES.len() + extras.len());
    let shapes: Vec<Vec<usize>> = GROUP_NAMES.iter().map(|n| params.group_shape(n)).collect();
    for ((name, data), shape) in params.groups().into_iter().zip(&shapes) {
        tensors.push(F32Ref { name, shape, data });
    }
    tensors.extend(extras.iter().map(|t| F32Ref { name: &t.name, shape: &t.shape, data: &t.data }));
    let bytes = raw::encode(path, &tensors, &meta)?;
    write_atomic(path, &bytes)
}

/// Reads and checks a model file: tensors, dtypes, shapes, configuration, finite values.
pub fn load_model(path: &Path) -> Result<ModelFile> {
    let bytes = raw::read(path)?;
    let file = RawFile::parse(path, &bytes)?;
    let err = |m: String| Error::file(path, m);

    let missing: Vec<&str> = GROUP_NAMES.into_iter().filter(|n| file.info(n).is_none()).collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "not a stablenet model: missing tensor(s) {} (a model file holds {})",
            missing.join(", "),
            GROUP_NAMES.join(", ")
        )));
    }
    for name in GROUP_NAMES {
        let dtype = file.need(name)?.dtype;
        if dtype != Dtype::F32 {
            return Err(err(format!("tensor {name} has dtype {dtype}; only F32 is accepted")));
        }
    }

    // d, w, N and C come from three tensors; the rest must agree with them.
    let shape = |name: &str| file.info(name).map(|i| i.shape.clone()).unwrap_or_default();
    let rank = |name: &str, want: &str| -> Result<Vec<usize>> {
        let s = shape(name);
        if s.len() == want.split(',').count() {
            Ok(s)
        } else {
            Err(err(format!("tensor {name} has shape {s:?}, expected {want}")))
        }
    };
    let ow = rank("opening.weight", "[width, d]")?;
    let sw = rank("steps.weight", "[N, width, width]")?;
    let cw = rank("classifier.weight", "[C, width]")?;
    let (w, d, n, c) = (ow[0], ow[1], sw[0], cw[0]);
    let mut params = Params::<f32> {
        d,
        w,
        n,
        c,
        k_in: Vec::new(),
        b_in: Vec::new(),
        k: Vec::new(),
        b: Vec::new(),
        wc: Vec::new(),
        mu: Vec::new(),
    };
    for name in GROUP_NAMES {
        let (found, want) = (shape(name), params.group_shape(name));
        if found != want {
            return Err(err(format!(
                "tensor {name} has shape {found:?}, expected {want:?} (width {w} and d {d} from \
                 opening.weight {ow:?}, N {n} from steps.weight, C {c} from classifier.weight)"
            )));
        }
    }

    let mut metadata = file.metadata();
    let config = parse_config(&metadata, (d, w, n, c)).map_err(err)?;
    config.validate().map_err(|e| err(bare(e)))?;

    for (name, v) in params.groups_mut() {
        *v = file.f32s(name)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(err(format!("tensor {name} holds a non-finite value ({}) at flat index {i}", v[i])));
        }
    }
    params.check_shape(&config).map_err(|e| err(bare(e)))?;

    let mut extras = Vec::new();
    for name in file.names() {
        if GROUP_NAMES.contains(&name.as_str()) {
            continue;
        }
        let info = file.need(&name)?;
        if info.dtype != Dtype::F32 {
            // Extras are not part of the contract and Tensor holds f32 only: keep the model
            // loadable (e.g. a PyTorch I64 step counter) and say what was left out.
            log::warn!(
                "{}: skipping extra tensor {name} of dtype {} (only F32 extras are read)",
                path.display(),
                info.dtype
            );
            continue;
        }
        let shape = info.shape.clone();
        extras.push(Tensor { data: file.f32s(&name)?, name, shape });
    }
    metadata.retain(|k, _| !RESERVED_KEYS.contains(&k.as_str()));
    Ok(ModelFile { config, params, extras, metadata })
}

fn parse_config(
    meta: &BTreeMap<String, String>,
    (d, width, steps, classes): (usize, usize, usize, usize),
) -> Result<ModelConfig, String> {
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            format!(
                "metadata key {key} is missing (a model file needs integrator, final_time and \
                 activation; gamma is optional)"
            )
        })
    };
    let integrator: Integrator = get("integrator")?.parse().map_err(|e| format!("metadata integrator: {}", bare(e)))?;
    let activation: Activation = get("activation")?.parse().map_err(|e| format!("metadata activation: {}", bare(e)))?;
    let text = get("final_time")?;
    let final_time = match text.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => t,
        Ok(_) => {
            return Err(format!("metadata final_time = {text:?} must be finite and > 0"));
        }
        Err(_) => {
            return Err(format!("metadata final_time = {text:?} is not a decimal number"));
        }
    };
    let gamma = match meta.get("gamma") {
        None => 0.0,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(g) if g.is_finite() && g >= 0.0 => g,
            Ok(_) => return Err(format!("metadata gamma = {text:?} must be finite and >= 0")),
            Err(_) => return Err(format!("metadata gamma = {text:?} is not a decimal number")),
        },
    };
    Ok(ModelConfig { d, width, steps, final_time, integrator, activation, gamma, classes })
}
