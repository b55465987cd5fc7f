//! `stablenet predict`: the predicted label and the class probabilities (softmax of the logits)
//! of every input example, read from CSV or safetensors, written as CSV.
use crate::eval::argmax;
use anyhow::{Context, Result, bail};
use clap::Args;
use safetensors::{Dtype, SafeTensors};
use stablenet_core::io::write_atomic;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model file (safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Inputs: CSV with one example of d comma-separated numbers per line (a first line that
    /// does not parse is a header and skipped), or safetensors with `x` f32 [n, d].
    #[arg(long)]
    input: PathBuf,
    /// Output CSV `label,p0,p1,...` (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: PredictArgs) -> Result<()> {
    if let Some(out) = &a.out {
        crate::check_outputs(&[out], &[&a.model, &a.input])?;
    }
    let model = crate::eval::read_model(&a.model)?;
    let cfg = &model.config;
    let bytes = std::fs::read(&a.input).with_context(|| format!("cannot read input {}", a.input.display()))?;
    let x = if is_safetensors(&a.input, &bytes) {
        read_safetensors(&a.input, &bytes, cfg.d)?
    } else {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text (CSV) nor a safetensors file", a.input.display()))?;
        let (x, header) = parse_csv(text, cfg.d).map_err(|e| anyhow::anyhow!("{}: {e}", a.input.display()))?;
        if let Some(h) = header {
            eprintln!("note: {}: line 1 is taken as a header and skipped: {h}", a.input.display());
        }
        x
    };
    let z = stablenet_core::logits(cfg, &model.params, &x)?;
    let csv = format_predictions(&z, cfg.classes);
    match &a.out {
        Some(path) => {
            crate::ensure_parent(path)?;
            write_atomic(path, csv.as_bytes())?;
            eprintln!("{} predictions written to {}", x.len() / cfg.d, path.display());
        }
        None => crate::emit(&csv)?,
    }
    Ok(())
}

/// `label,p0,...` then one row per example: the arg-max logit and the softmax probabilities.
pub fn format_predictions(z: &[f32], classes: usize) -> String {
    let mut out = String::from("label");
    (0..classes).for_each(|k| write!(out, ",p{k}").expect("String"));
    out.push('\n');
    for row in z.chunks_exact(classes) {
        // Softmax in f64 with the max shift, so large logits cannot overflow.
        let m = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
        let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        write!(out, "{}", argmax(row)).expect("String");
        e.iter().for_each(|v| write!(out, ",{:.6}", v / s).expect("String"));
        out.push('\n');
    }
    out
}

fn is_safetensors(path: &Path, bytes: &[u8]) -> bool {
    // A safetensors file starts with an 8-byte header length and then the JSON header '{'.
    path.extension().is_some_and(|e| e == "safetensors") || (bytes.len() > 8 && bytes[8] == b'{')
}

fn read_safetensors(path: &Path, bytes: &[u8], d: usize) -> Result<Vec<f32>> {
    let p = path.display();
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("{p}: not a valid safetensors file: {e}"))?;
    let t = st.tensor("x").map_err(|_| anyhow::anyhow!("{p}: no tensor `x` (expected x, f32 [n, {d}])"))?;
    if t.dtype() != Dtype::F32 {
        bail!("{p}: tensor x has dtype {}; only F32 is accepted", t.dtype());
    }
    let [n, cols] = t.shape()[..] else {
        bail!("{p}: tensor x has shape {:?}, expected [n, {d}]", t.shape());
    };
    if cols != d {
        bail!("{p}: tensor x has {cols} columns but the model takes d = {d} inputs");
    }
    if n == 0 {
        bail!("{p}: tensor x holds no examples");
    }
    let x: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        bail!("{p}: example {} (row {} of x) has a non-finite value {} in column {}", k / d, k / d, x[k], k % d);
    }
    Ok(x)
}

/// Parses CSV rows of d numbers. A first non-empty line that does not parse is a header and
/// is returned for a note; later lines must parse. Line numbers in errors are 1-based.
pub fn parse_csv(text: &str, d: usize) -> Result<(Vec<f32>, Option<String>), String> {
    let mut x = Vec::new();
    let mut header = None;
    let mut first = true;
    // A byte-order mark (spreadsheet exports) is not part of the first value.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<Option<f32>> = fields.iter().map(|f| f.parse::<f32>().ok()).collect();
        // A header has no number in it; a first row with a bad value is an error like any other.
        if std::mem::take(&mut first) && parsed.iter().all(Option::is_none) {
            header = Some(line.to_string());
            continue;
        }
        let n = i + 1;
        if fields.len() != d {
            let k = fields.len();
            let values = if k == 1 { "value" } else { "values" };
            return Err(format!("line {n} has {k} {values} but the model takes d = {d} inputs per example"));
        }
        for (c, (f, v)) in fields.iter().zip(parsed).enumerate() {
            match v {
                None => return Err(format!("line {n}, column {}: {f:?} is not a number", c + 1)),
                Some(v) if !v.is_finite() => {
                    return Err(format!("line {n}, column {}: {f} is not a finite number", c + 1));
                }
                Some(v) => x.push(v),
            }
        }
    }
    if let (true, Some(h)) = (x.is_empty(), &header) {
        return Err(format!("no examples: its one line, {h:?}, is not {d} comma-separated numbers"));
    }
    if x.is_empty() {
        return Err("no examples (the file is empty)".into());
    }
    Ok((x, header))
}
