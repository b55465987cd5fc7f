//! Image-network model files (docs/IMAGES.md): the parameter tensors under their PyTorch
//! names and shapes, the architecture in the metadata (`network = "image"`, `integrator`,
//! `activation`, `input` "c,h,w", `channels` "c1,c2,..", `steps`, `final_time`, `gamma`,
//! `classes`), optimiser state and other metadata alongside. Written atomically.
use super::{Tensor, load_tensors, save_tensors};
use crate::error::{Error, Result};
use crate::image::{ImageConfig, ImageParams, Shape};
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata keys that hold the architecture.
pub const IMAGE_KEYS: [&str; 9] =
    ["network", "integrator", "activation", "input", "channels", "steps", "final_time", "gamma", "classes"];

/// A loaded image model.
pub struct ImageModelFile {
    pub config: ImageConfig,
    pub params: ImageParams<f32>,
    /// Tensors that are not parameters (optimiser state).
    pub extras: Vec<Tensor>,
    /// Metadata other than [`IMAGE_KEYS`].
    pub metadata: BTreeMap<String, String>,
}

fn list(v: &[usize]) -> String {
    v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// Whether a file's metadata says it holds an image network.
pub fn is_image_model(meta: &BTreeMap<String, String>) -> bool {
    meta.get("network").is_some_and(|n| n == "image")
}

pub fn save_image_model(
    path: &Path,
    cfg: &ImageConfig,
    params: &ImageParams<f32>,
    extras: &[Tensor],
    extra_meta: &BTreeMap<String, String>,
) -> Result<()> {
    let fail = |m: String| Err(Error::file(path, format!("cannot save model: {m}")));
    cfg.validate()?;
    params.check_shape(cfg)?;
    if let Some(s) =
        params.slots.iter().find(|s| params.data[s.offset..s.offset + s.len].iter().any(|v| !v.is_finite()))
    {
        return fail(format!("{} holds a NaN or infinity (has training diverged?)", s.name));
    }
    if let Some(k) = extra_meta.keys().find(|k| IMAGE_KEYS.contains(&k.as_str())) {
        return fail(format!("extra metadata key {k:?} is reserved for the configuration"));
    }
    let mut meta = extra_meta.clone();
    let i = cfg.input;
    for (k, v) in [
        ("network", "image".to_string()),
        ("integrator", cfg.integrator.name().into()),
        ("activation", cfg.activation.name().into()),
        ("input", list(&[i.c, i.h, i.w])),
        ("channels", list(&cfg.channels)),
        ("steps", cfg.steps.to_string()),
        ("final_time", format!("{}", cfg.final_time)),
        ("gamma", format!("{}", cfg.gamma)),
        ("classes", cfg.classes.to_string()),
    ] {
        meta.insert(k.into(), v);
    }
    let mut tensors: Vec<Tensor> = params
        .slots
        .iter()
        .map(|s| Tensor::new(s.name.clone(), s.shape.clone(), params.data[s.offset..s.offset + s.len].to_vec()))
        .collect();
    if let Some(t) = extras.iter().find(|t| params.slots.iter().any(|s| s.name == t.name)) {
        return fail(format!("extra tensor {} collides with a model tensor", t.name));
    }
    tensors.extend(extras.iter().cloned());
    save_tensors(path, &tensors, &meta)
}

pub fn load_image_model(path: &Path) -> Result<ImageModelFile> {
    let (tensors, mut meta) = load_tensors(path)?;
    let err = |m: String| Error::file(path, m);
    if !is_image_model(&meta) {
        return Err(err("not an image-network model (no metadata network = \"image\")".into()));
    }
    let get = |k: &str| meta.get(k).cloned().ok_or_else(|| err(format!("image model without metadata key {k}")));
    let nums = |k: &str| -> Result<Vec<usize>> {
        get(k)?
            .split(',')
            .map(|v| v.trim().parse().map_err(|_| err(format!("metadata {k}: {v:?} is not a number"))))
            .collect()
    };
    let num = |k: &str| -> Result<f64> { get(k)?.parse().map_err(|_| err(format!("metadata {k} is not a number"))) };
    let input = nums("input")?;
    if input.len() != 3 {
        return Err(err(format!("metadata input must be c,h,w, got {input:?}")));
    }
    let config = ImageConfig {
        integrator: get("integrator")?.parse()?,
        activation: get("activation")?.parse()?,
        input: Shape::new(input[0], input[1], input[2]),
        channels: nums("channels")?,
        steps: nums("steps")?.first().copied().unwrap_or(0),
        final_time: num("final_time")?,
        gamma: num("gamma")?,
        classes: nums("classes")?.first().copied().unwrap_or(0),
    };
    config.validate().map_err(|e| err(e.to_string()))?;
    let mut params = ImageParams::<f32>::zeros(&config);
    let mut extras = Vec::new();
    let mut found = Vec::new();
    for t in tensors {
        match params.slots.iter().find(|s| s.name == t.name).cloned() {
            Some(s) if s.shape == t.shape => {
                if t.data.iter().any(|v| !v.is_finite()) {
                    return Err(err(format!("tensor {} holds a NaN or infinity", t.name)));
                }
                params.get_mut(&s.name).copy_from_slice(&t.data);
                found.push(s.name);
            }
            Some(s) => return Err(err(format!("tensor {} has shape {:?}, expected {:?}", t.name, t.shape, s.shape))),
            None => extras.push(t),
        }
    }
    let missing: Vec<_> = params.slots.iter().filter(|s| !found.contains(&s.name)).map(|s| s.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(err(format!("missing parameter tensor(s): {}", missing.join(", "))));
    }
    meta.retain(|k, _| !IMAGE_KEYS.contains(&k.as_str()));
    Ok(ImageModelFile { config, params, extras, metadata: meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Activation, Integrator};

    #[test]
    fn image_models_round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("stablenet-image-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = ImageConfig {
            integrator: Integrator::Leapfrog,
            activation: Activation::Relu,
            input: Shape::new(1, 8, 8),
            channels: vec![2, 4],
            steps: 3,
            final_time: 0.7,
            gamma: 0.0,
            classes: 10,
        };
        let p = ImageParams::<f32>::init(&cfg, 5);
        let path = dir.join("m.safetensors");
        let mut meta = BTreeMap::new();
        meta.insert("dataset".to_string(), "mnist".to_string());
        let extra = Tensor::new("optim.t", vec![1], vec![3.0]);
        save_image_model(&path, &cfg, &p, std::slice::from_ref(&extra), &meta).unwrap();
        let m = load_image_model(&path).unwrap();
        assert_eq!((m.config, m.params, m.extras, m.metadata), (cfg.clone(), p.clone(), vec![extra], meta));
        // A parameter tensor missing.
        let (mut t, meta) = load_tensors(&path).unwrap();
        t.retain(|t| t.name != "widen.0.bias");
        save_tensors(&path, &t, &meta).unwrap();
        let e = load_image_model(&path).err().unwrap().to_string();
        assert!(e.contains("missing parameter tensor(s): widen.0.bias"), "{e}");
        // Not an image model.
        save_tensors(&path, &t, &BTreeMap::new()).unwrap();
        assert!(load_image_model(&path).err().unwrap().to_string().contains("not an image-network model"));
        // Diverged parameters are refused at save time.
        let mut bad = p.clone();
        bad.get_mut("stages.1.bias")[0] = f32::NAN;
        let e = save_image_model(&path, &cfg, &bad, &[], &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("stages.1.bias"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
