//! `stablenet plot`: PNG pictures of a model and a run.
//!
//! - `regions`: the decision regions of a 2-D model over the input plane, data on top;
//! - `flow`: the features of every class at a few steps j (the network as a flow);
//! - `curves`: loss and accuracy against epoch from a metrics file (JSON lines).
//!
//! Text comes from DejaVu Sans compiled into the binary and is rasterised in Rust (see
//! [`canvas`]), so no system font, fontconfig or freetype is needed.
mod canvas;
mod digits;

use crate::eval::{DataArgs, argmax, describe_model, read_model};
use anyhow::{Context, Result, anyhow, bail};
use canvas::Canvas;
use clap::{Args, Subcommand, ValueEnum};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use stablenet_core::io::write_atomic;
use stablenet_core::trajectory::trajectory;
use stablenet_core::{evaluate, logits};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PlotArgs {
    #[command(subcommand)]
    kind: PlotKind,
}

#[derive(Subcommand, Debug)]
enum PlotKind {
    /// Decision regions of a model with 2-D inputs, the data points on top.
    Regions(RegionsArgs),
    /// The features of every class at steps j = 0, N/4, N/2, 3N/4, N (2-D PCA of the states y_j
    /// by default; hamiltonian shows y, not the momentum z).
    Flow(FlowArgs),
    /// Loss and accuracy against epoch from a metrics file of JSON lines
    /// (`epoch`, `train_loss`, `train_acc`, `val_loss`, `val_acc`; val fields may be null).
    Curves(CurvesArgs),
    /// Test images an image model (MNIST, Fashion-MNIST) gets wrong, with true -> predicted class.
    Misclassified(digits::MisclassifiedArgs),
}

/// The picture file and its size in pixels.
#[derive(Args, Debug)]
struct ImageArgs {
    /// Output PNG file.
    #[arg(long)]
    out: PathBuf,
    /// Width in pixels (default depends on the plot).
    #[arg(long)]
    width: Option<u32>,
    /// Height in pixels (default depends on the plot).
    #[arg(long)]
    height: Option<u32>,
}

impl ImageArgs {
    fn size(&self, default: (u32, u32)) -> Result<(u32, u32)> {
        let size = (self.width.unwrap_or(default.0), self.height.unwrap_or(default.1));
        for (v, name) in [(size.0, "--width"), (size.1, "--height")] {
            if !(200..=8000).contains(&v) {
                bail!("{name} {v} is outside 200..=8000 pixels");
            }
        }
        Ok(size)
    }
}

#[derive(Args, Debug)]
struct RegionsArgs {
    /// Model file (safetensors); its input dimension d must be 2.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Cells per axis of the grid on which the model is evaluated.
    #[arg(long, default_value_t = 250)]
    grid: usize,
    #[command(flatten)]
    image: ImageArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Projection {
    /// The two leading principal components of each panel's states.
    Pca,
    /// The first two coordinates of the state, y_1 and y_2.
    Coords,
}

#[derive(Args, Debug)]
struct FlowArgs {
    /// Model file (safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// How a w-dimensional state is shown in the plane.
    #[arg(long, value_enum, default_value_t = Projection::Pca)]
    projection: Projection,
    /// Number of panels (steps shown, equally spaced from 0 to N).
    #[arg(long, default_value_t = 5)]
    panels: usize,
    /// At most this many examples (an evenly spaced subset, so every class keeps its share).
    #[arg(long, default_value_t = 600)]
    points: usize,
    #[command(flatten)]
    image: ImageArgs,
}

#[derive(Args, Debug)]
struct CurvesArgs {
    /// Metrics file: one JSON object per line.
    #[arg(long)]
    metrics: PathBuf,
    #[command(flatten)]
    image: ImageArgs,
}

pub fn run(a: PlotArgs) -> Result<()> {
    // The picture must not overwrite a file it is drawn from: the model or metrics, a data file
    // given by --data, or the data files the model names (its default data).
    let (out, input, data) = match &a.kind {
        PlotKind::Regions(a) => (&a.image.out, &a.model, Some(&a.data)),
        PlotKind::Flow(a) => (&a.image.out, &a.model, Some(&a.data)),
        PlotKind::Curves(a) => (&a.image.out, &a.metrics, None),
        PlotKind::Misclassified(a) => (&a.image.out, &a.model, Some(&a.data)),
    };
    let mut inputs = vec![input.clone()];
    if let Some(d) = data {
        inputs.extend(d.data.iter().map(PathBuf::from).filter(|p| p.is_file()));
        inputs.extend(named_data_files(input));
    }
    crate::check_outputs(&[out], &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    match a.kind {
        PlotKind::Regions(a) => regions(a),
        PlotKind::Flow(a) => flow(a),
        PlotKind::Curves(a) => curves(a),
        PlotKind::Misclassified(a) => digits::misclassified(a),
    }
}

/// The existing data files a model's metadata names (`dataset`, `val_dataset`); none when the
/// model cannot be read (loading it reports that).
fn named_data_files(model: &Path) -> Vec<PathBuf> {
    let Ok((_, meta)) = stablenet_core::io::load_tensors(model) else { return vec![] };
    ["dataset", "val_dataset"].iter().filter_map(|k| meta.get(*k)).map(PathBuf::from).filter(|p| p.is_file()).collect()
}

// ---------------------------------------------------------------------------------------------
// Rendering scaffold: fonts, colours, PNG output.

type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

const FONT: &str = "sans-serif";

/// Tableau 10: distinct and readable on white and on its own light tints.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn class_color(k: usize) -> RGBColor {
    PALETTE[k % PALETTE.len()]
}

/// `c` blended with white; `a` = 1 is `c` itself.
fn tint(c: RGBColor, a: f64) -> RGBColor {
    let f = |v: u8| (255.0 - a * (255.0 - v as f64)).round() as u8;
    RGBColor(f(c.0), f(c.1), f(c.2))
}

/// A title line: `size` pixels high, or smaller so that it fits `area`'s width.
fn heading<'a>(area: &Area<'a>, text: &str, size: f64, bold: bool) -> Result<Area<'a>> {
    let size = fitted(text, size, bold, area.dim_in_pixel().0.saturating_sub(16));
    let style = if bold { FontStyle::Bold } else { FontStyle::Normal };
    Ok(area.titled(text, (FONT, size, style))?)
}

/// `size`, shrunk so that `text` is at most `max_w` pixels wide (never below 8).
fn fitted(text: &str, size: f64, bold: bool, max_w: u32) -> f64 {
    let w = canvas::fonts().map_or(0.0, |f| f.width(bold, size, text)) as f64;
    if w <= max_w as f64 { size } else { (size * max_w as f64 / w).floor().max(8.0) }
}

const RIM: RGBColor = RGBColor(30, 30, 30);

/// A centred row "(o) class 0  (o) class 1 ..." in the colours of the points.
fn class_key(area: &Area<'_>, classes: usize) -> Result<()> {
    let entry = 96;
    let (w, h) = area.dim_in_pixel();
    let x0 = (w as i32 - entry * classes as i32).max(0) / 2;
    let y = h as i32 / 2;
    let style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Left, VPos::Center));
    for k in 0..classes {
        let x = x0 + entry * k as i32;
        area.draw(&Circle::new((x + 8, y), 6, class_color(k).filled()))?;
        area.draw(&Circle::new((x + 8, y), 6, RIM.stroke_width(1)))?;
        area.draw_text(&format!("class {k}"), &style, (x + 20, y))?;
    }
    Ok(())
}

/// Draws into an RGB buffer and writes it as PNG (atomically, like every file of the project).
fn render_png(path: &Path, (w, h): (u32, u32), draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<()> {
    let fonts = canvas::fonts().ok_or_else(|| anyhow!("the bundled DejaVu Sans font could not be loaded"))?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = Canvas::new(&mut buf, (w, h), fonts).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("encoding the PNG")?;
        writer.write_image_data(&buf).context("encoding the PNG")?;
    }
    crate::ensure_parent(path)?;
    write_atomic(path, &bytes)?;
    eprintln!("wrote {} ({w} x {h})", path.display());
    Ok(())
}

/// The range of `v` widened by `pad` of its span on each side (and never empty).
fn padded(v: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    if !lo.is_finite() {
        return -1.0..1.0;
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    (lo - pad * span)..(hi + pad * span)
}

// ---------------------------------------------------------------------------------------------
// regions

fn regions(a: RegionsArgs) -> Result<()> {
    let size = a.image.size((820, 720))?;
    let model = read_model(&a.model)?;
    let cfg = &model.config;
    if cfg.d != 2 {
        bail!(
            "{}: decision regions are drawn over a 2-D input plane, but this model takes d = {} inputs",
            a.model.display(),
            cfg.d
        );
    }
    if !(2..=2000).contains(&a.grid) {
        bail!("--grid {} is outside 2..=2000", a.grid);
    }
    let data = a.data.load(&model, &a.model)?;
    let set = &data.set;
    let xr = padded(set.x.iter().step_by(2).map(|v| *v as f64), 0.06);
    let yr = padded(set.x.iter().skip(1).step_by(2).map(|v| *v as f64), 0.06);
    let g = a.grid;
    let (dx, dy) = ((xr.end - xr.start) / g as f64, (yr.end - yr.start) / g as f64);
    let mut centres = Vec::with_capacity(2 * g * g);
    for iy in 0..g {
        for ix in 0..g {
            centres.push((xr.start + (ix as f64 + 0.5) * dx) as f32);
            centres.push((yr.start + (iy as f64 + 0.5) * dy) as f32);
        }
    }
    let c = cfg.classes;
    let z = logits(cfg, &model.params, &centres)?;
    let ev = evaluate(cfg, &model.params, &set.x, &set.labels)?;
    // Each cell: its predicted class, paler where the model is less sure (max softmax near 1/C).
    let cells: Vec<RGBColor> = z
        .chunks_exact(c)
        .map(|row| {
            let k = argmax(row);
            let s: f64 = row.iter().map(|v| ((v - row[k]) as f64).exp()).sum();
            let conf = ((1.0 / s - 1.0 / c as f64) / (1.0 - 1.0 / c as f64)).clamp(0.0, 1.0);
            tint(class_color(k), 0.18 + 0.32 * conf)
        })
        .collect();
    let title = format!("Decision regions: {}", describe_model(cfg));
    let subtitle = format!("{}; accuracy {:.2}%, loss {:.4}", data.what, 100.0 * ev.accuracy, ev.loss);
    render_png(&a.image.out, size, |root| {
        let area = heading(root, &title, 20.0, true)?;
        let area = heading(&area, &subtitle, 15.0, false)?;
        let (key, area) = area.split_vertically(28);
        class_key(&key, c)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(xr.clone(), yr.clone())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x1")
            .y_desc("x2")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(cells.iter().enumerate().map(|(i, col)| {
            let (ix, iy) = ((i % g) as f64, (i / g) as f64);
            let p0 = (xr.start + ix * dx, yr.start + iy * dy);
            Rectangle::new([p0, (p0.0 + dx, p0.1 + dy)], col.filled())
        }))?;
        // Points on top; a dark rim keeps them visible over their own region's tint.
        let r = if set.len() > 2000 { 2 } else { 3 };
        chart.draw_series(set.x.chunks_exact(2).zip(&set.labels).map(|(p, l)| {
            EmptyElement::at((p[0] as f64, p[1] as f64))
                + Circle::new((0, 0), r, class_color(*l as usize).filled())
                + Circle::new((0, 0), r, RIM.stroke_width(1))
        }))?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// flow

/// Steps shown: `panels` values equally spaced over 0..=N, rounded, without repeats.
fn panel_steps(n: usize, panels: usize) -> Vec<usize> {
    let mut js: Vec<usize> = if panels <= 1 {
        vec![n]
    } else {
        (0..panels).map(|i| ((i * n) as f64 / (panels - 1) as f64).round() as usize).collect()
    };
    js.dedup();
    js
}

fn flow(a: FlowArgs) -> Result<()> {
    let model = read_model(&a.model)?;
    let cfg = &model.config;
    if !(1..=12).contains(&a.panels) {
        bail!("--panels {} is outside 1..=12", a.panels);
    }
    if a.points == 0 {
        bail!("--points must be at least 1");
    }
    let data = a.data.load(&model, &a.model)?;
    let set = &data.set;
    let stride = set.len().div_ceil(a.points);
    let idx: Vec<usize> = (0..set.len()).step_by(stride).collect();
    let sub = set.subset(&idx);
    let traj = trajectory::<f32>(cfg, &model.params, &sub.x)?;
    let (w, n) = (cfg.width, cfg.steps);
    let js = panel_steps(n, a.panels);
    let cols = if js.len() <= 5 { js.len() } else { js.len().div_ceil(2) };
    let rows = js.len().div_ceil(cols);
    let size = a.image.size((cols as u32 * 330 + 20, rows as u32 * 330 + 110))?;

    // Project each panel's states to the plane.
    let mut panels = Vec::with_capacity(js.len());
    let mut prev_axes: Option<[Vec<f64>; 2]> = None;
    for &j in &js {
        let states: Vec<f64> = traj.iter().flat_map(|s| s[j * w..(j + 1) * w].iter().map(|v| *v as f64)).collect();
        let (pts, note, labels) = match a.projection {
            Projection::Coords => {
                let pts = states.chunks_exact(w).map(|y| (y[0], if w > 1 { y[1] } else { 0.0 })).collect();
                (pts, String::new(), ["y1", "y2"])
            }
            Projection::Pca => {
                let (axes, share) = pca2(&states, w, prev_axes.as_ref());
                let pts =
                    states.chunks_exact(w).map(|y| (dot(y, &axes[0]), dot(y, &axes[1]))).collect::<Vec<(f64, f64)>>();
                prev_axes = Some(axes);
                (pts, format!(" ({:.0}% of variance)", 100.0 * share), ["PC1", "PC2"])
            }
        };
        panels.push((j, pts, note, labels));
    }

    let how = match a.projection {
        Projection::Pca => "two leading principal components of the states at each step",
        Projection::Coords => "first two state coordinates",
    };
    let title = format!("Features through the steps: {}", describe_model(cfg));
    let subtitle = format!("{}, {} shown; {how}", data.what, sub.len());
    let h = cfg.h();
    render_png(&a.image.out, size, |root| {
        let area = heading(root, &title, 20.0, true)?;
        let area = heading(&area, &subtitle, 14.0, false)?;
        let (grid, key) = area.split_vertically(area.dim_in_pixel().1 as i32 - 34);
        for ((j, pts, note, labels), cell) in panels.iter().zip(grid.split_evenly((rows, cols))) {
            let caption = format!("j = {j}, t = {:.2}{note}", *j as f64 * h);
            let xr = padded(pts.iter().map(|p| p.0), 0.05);
            let yr = padded(pts.iter().map(|p| p.1), 0.05);
            let mut chart = ChartBuilder::on(&cell)
                .caption(&caption, (FONT, fitted(&caption, 13.0, false, cell.dim_in_pixel().0.saturating_sub(8))))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(44)
                .build_cartesian_2d(xr, yr)?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_labels(5)
                .y_labels(5)
                .x_desc(labels[0])
                .y_desc(labels[1])
                .label_style((FONT, 11))
                .axis_desc_style((FONT, 12))
                .draw()?;
            chart.draw_series(
                pts.iter()
                    .zip(&sub.labels)
                    .map(|(p, l)| Circle::new(*p, 2, class_color(*l as usize).mix(0.75).filled())),
            )?;
        }
        class_key(&key, cfg.classes)?;
        Ok(())
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The two leading principal axes of the rows of `x` (n x w) and the share of the variance they
/// hold. Signs follow `prev` (the previous panel's axes) so the picture does not flip between
/// panels; without it, each axis's largest component is positive.
fn pca2(x: &[f64], w: usize, prev: Option<&[Vec<f64>; 2]>) -> ([Vec<f64>; 2], f64) {
    let n = (x.len() / w).max(1) as f64;
    let mut mean = vec![0.0; w];
    x.chunks_exact(w).for_each(|r| mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n));
    let mut cov = vec![0.0; w * w];
    for r in x.chunks_exact(w) {
        for i in 0..w {
            for k in 0..w {
                cov[i * w + k] += (r[i] - mean[i]) * (r[k] - mean[k]) / n;
            }
        }
    }
    let trace: f64 = (0..w).map(|i| cov[i * w + i]).sum();
    let (vals, vecs) = sym_eig(cov, w);
    let mut order: Vec<usize> = (0..w).collect();
    order.sort_by(|a, b| vals[*b].total_cmp(&vals[*a]));
    let axis = |m: usize| -> Vec<f64> {
        match order.get(m) {
            Some(&c) => {
                let mut v: Vec<f64> = (0..w).map(|i| vecs[i * w + c]).collect();
                let flip = match prev {
                    Some(p) => dot(&v, &p[m]) < 0.0,
                    None => v.iter().fold(0.0f64, |b, x| if x.abs() > b.abs() { *x } else { b }) < 0.0,
                };
                if flip {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            }
            None => vec![0.0; w], // w = 1: the second axis is flat
        }
    };
    let top: f64 = order.iter().take(2).map(|&c| vals[c].max(0.0)).sum();
    let share = if trace > 0.0 { (top / trace).min(1.0) } else { 1.0 };
    ([axis(0), axis(1)], share)
}

/// Eigenvalues and eigenvectors (columns of the returned w x w matrix) of a symmetric matrix,
/// by cyclic Jacobi rotations: robust for the small widths of these networks.
fn sym_eig(mut a: Vec<f64>, w: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; w * w];
    (0..w).for_each(|i| v[i * w + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..100 {
        let off: f64 = (0..w)
            .flat_map(|p| (0..w).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * w + q].powi(2))
            .sum();
        if off <= 1e-24 * total || total == 0.0 {
            break;
        }
        for p in 0..w {
            for q in p + 1..w {
                let apq = a[p * w + q];
                if apq == 0.0 {
                    continue;
                }
                // Rotation that zeroes a[p][q] (the smaller root keeps it stable).
                let theta = (a[q * w + q] - a[p * w + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..w {
                    let (akp, akq) = (a[k * w + p], a[k * w + q]);
                    a[k * w + p] = c * akp - s * akq;
                    a[k * w + q] = s * akp + c * akq;
                }
                for k in 0..w {
                    let (apk, aqk) = (a[p * w + k], a[q * w + k]);
                    a[p * w + k] = c * apk - s * aqk;
                    a[q * w + k] = s * apk + c * aqk;
                }
                for k in 0..w {
                    let (vkp, vkq) = (v[k * w + p], v[k * w + q]);
                    v[k * w + p] = c * vkp - s * vkq;
                    v[k * w + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..w).map(|i| a[i * w + i]).collect(), v)
}

// ---------------------------------------------------------------------------------------------
// curves

/// One epoch of a metrics file.
#[derive(Clone, Debug, PartialEq)]
struct Epoch {
    epoch: f64,
    train_loss: f64,
    train_acc: f64,
    val_loss: Option<f64>,
    val_acc: Option<f64>,
}

/// Parses JSON lines; blank lines are skipped, other fields ignored. Errors name the line.
fn parse_metrics(text: &str) -> Result<Vec<Epoch>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON ({e})"))?;
        let obj = v.as_object().ok_or_else(|| format!("line {n}: not a JSON object"))?;
        let field = |k: &str, required: bool| -> Result<Option<f64>, String> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) if required => Err(format!("line {n}: no {k}")),
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| format!("line {n}: {k} is {x}, not a number")),
            }
        };
        out.push(Epoch {
            epoch: field("epoch", true)?.expect("required"),
            train_loss: field("train_loss", true)?.expect("required"),
            train_acc: field("train_acc", true)?.expect("required"),
            val_loss: field("val_loss", false)?,
            val_acc: field("val_acc", false)?,
        });
    }
    if out.is_empty() {
        return Err("no epochs (the file is empty)".into());
    }
    Ok(out)
}

fn curves(a: CurvesArgs) -> Result<()> {
    let size = a.image.size((1100, 480))?;
    let text =
        std::fs::read_to_string(&a.metrics).with_context(|| format!("cannot read metrics {}", a.metrics.display()))?;
    let rows = parse_metrics(&text).map_err(|e| anyhow!("{}: {e}", a.metrics.display()))?;
    // Accuracies are fractions (as `EpochReport` holds them); a file already in percent is
    // recognised by values above 1.
    let pct =
        if rows.iter().flat_map(|r| [Some(r.train_acc), r.val_acc]).flatten().any(|v| v > 1.0) { 1.0 } else { 100.0 };
    let series = |f: &dyn Fn(&Epoch) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter().filter_map(|r| f(r).map(|v| (r.epoch, v))).collect()
    };
    let loss = [series(&|r| Some(r.train_loss)), series(&|r| r.val_loss)];
    let acc = [series(&|r| Some(pct * r.train_acc)), series(&|r| r.val_acc.map(|v| pct * v))];
    let xr = match rows[..] {
        [ref only] => (only.epoch - 1.0)..(only.epoch + 1.0),
        _ => padded(rows.iter().map(|r| r.epoch), 0.02),
    };
    let whole_epochs = rows.iter().all(|r| r.epoch.fract() == 0.0);
    let best =
        acc[1].iter().fold(None, |b: Option<(f64, f64)>, p| if b.is_none_or(|b| p.1 > b.1) { Some(*p) } else { b });
    let mut title = format!(
        "Training curves: {} ({} epoch{})",
        a.metrics.file_name().map_or(a.metrics.display().to_string(), |n| n.to_string_lossy().into_owned()),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if let Some((e, v)) = best {
        title += &format!("; best validation accuracy {v:.2}% at epoch {e}");
    }
    let marks = rows.len() <= 60;
    render_png(&a.image.out, size, |root| {
        let area = heading(root, &title, 18.0, true)?;
        let halves = area.split_evenly((1, 2));
        let panels = [
            (&halves[0], "Loss", "cross-entropy loss", &loss, padded(loss.iter().flatten().map(|p| p.1), 0.05)),
            (&halves[1], "Accuracy", "accuracy (%)", &acc, {
                let r = padded(acc.iter().flatten().map(|p| p.1), 0.05);
                r.start.max(0.0)..r.end.min(100.5)
            }),
        ];
        for (cell, caption, ydesc, data, yr) in panels {
            let mut chart = ChartBuilder::on(cell)
                .caption(caption, (FONT, 16))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(60)
                .build_cartesian_2d(xr.clone(), yr)?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(245, 245, 245))
                .bold_line_style(RGBColor(220, 220, 220))
                .x_desc("epoch")
                .y_desc(ydesc)
                .x_label_formatter(&|v| match (whole_epochs, v.fract() == 0.0) {
                    (true, true) => format!("{v:.0}"),
                    (true, false) => String::new(), // no fractional ticks for whole epochs
                    _ => format!("{v}"),
                })
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()?;
            for (pts, name, col) in [(&data[0], "training", PALETTE[0]), (&data[1], "validation", PALETTE[1])] {
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))?
                    .label(name)
                    // plotters centres the mark on a box shorter than the drawn line; +2 px
                    // puts it level with the lower-case letters.
                    .legend(move |(x, y)| PathElement::new([(x, y + 2), (x + 20, y + 2)], col.stroke_width(2)));
                if marks {
                    chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, col.filled())))?;
                }
            }
            chart
                .configure_series_labels()
                .position(if caption == "Loss" {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(160, 160, 160))
                .label_font((FONT, 13))
                .draw()?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sym_eig_diagonalises() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (vals, v) = sym_eig(a.clone(), 3);
        // A v_k = lambda_k v_k for every column.
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * v[j * 3 + k]).sum();
                assert!((av - vals[k] * v[i * 3 + k]).abs() < 1e-12);
            }
        }
        let mut s = vals.clone();
        s.sort_by(f64::total_cmp);
        assert!((s.iter().sum::<f64>() - 8.0).abs() < 1e-12);
    }

    #[test]
    fn pca2_finds_the_spread_directions() {
        // Points spread along (1, 1, 0) a lot and along (0, 0, 1) a little.
        let x: Vec<f64> =
            (-10..=10).flat_map(|s| [-1.0, 1.0].map(|t| [s as f64, s as f64, 0.1 * t])).flatten().collect();
        let ([a, b], share) = pca2(&x, 3, None);
        let r = 0.5f64.sqrt();
        assert!((a[0] - r).abs() < 1e-9 && (a[1] - r).abs() < 1e-9 && a[2].abs() < 1e-9, "{a:?}");
        assert!((b[2].abs() - 1.0).abs() < 1e-9, "{b:?}");
        assert!((share - 1.0).abs() < 1e-12);
        // With the previous axes negated, the signs follow them.
        let ([a2, _], _) = pca2(&x, 3, Some(&[a.iter().map(|v| -v).collect(), b.clone()]));
        assert!(a2[0] < 0.0);
    }

    #[test]
    fn panel_steps_are_spread_and_distinct() {
        assert_eq!(panel_steps(16, 5), vec![0, 4, 8, 12, 16]);
        assert_eq!(panel_steps(2, 5), vec![0, 1, 2]);
        assert_eq!(panel_steps(7, 1), vec![7]);
    }

    #[test]
    fn metrics_parse_and_errors_name_the_line() {
        let ok = "{\"epoch\":1,\"train_loss\":0.5,\"train_acc\":0.8,\"val_loss\":null,\"val_acc\":null}\n\n\
                  {\"epoch\":2,\"train_loss\":0.4,\"train_acc\":0.9,\"val_loss\":0.45,\"val_acc\":0.88,\"seconds\":1}\n";
        let rows = parse_metrics(ok).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].val_acc, rows[1].val_acc), (None, Some(0.88)));
        let bad = "{\"epoch\":1,\"train_loss\":0.5,\"train_acc\":0.8}\n{\"epoch\":2,\"train_acc\":0.9}\n";
        assert_eq!(parse_metrics(bad).unwrap_err(), "line 2: no train_loss");
        assert!(
            parse_metrics("{\"epoch\":1,\"train_loss\":\"x\",\"train_acc\":1}").unwrap_err().contains("not a number")
        );
        assert!(parse_metrics("epoch,loss\n").unwrap_err().starts_with("line 1: not JSON"));
        assert!(parse_metrics("\n").unwrap_err().contains("no epochs"));
    }
}
