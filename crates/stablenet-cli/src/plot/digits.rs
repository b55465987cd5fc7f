//! `stablenet plot misclassified`: the test images an image model gets wrong, each with its
//! true and its predicted class.
use super::{Area, FONT, ImageArgs, heading, render_png};
use crate::eval::DataArgs;
use anyhow::{Result, bail};
use clap::Args;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use stablenet_core::data::ImageSet;
use stablenet_core::image::ImageNet;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MisclassifiedArgs {
    /// Image model file (safetensors, from `stablenet train --data mnist|fashion-mnist`).
    #[arg(long)]
    pub(super) model: PathBuf,
    #[command(flatten)]
    pub(super) data: DataArgs,
    /// At most this many images, in test-set order.
    #[arg(long, default_value_t = 40)]
    count: usize,
    #[command(flatten)]
    pub(super) image: ImageArgs,
}

const COLS: usize = 8;
const SCALE: i32 = 3;

pub fn misclassified(a: MisclassifiedArgs) -> Result<()> {
    if !(1..=400).contains(&a.count) {
        bail!("--count {} is outside 1..=400", a.count);
    }
    let (model, images, what) = crate::image::model_and_images(&a.model, &a.data)?;
    let cfg = &model.config;
    let (c, h, w) = (cfg.input.c, cfg.input.h as i32, cfg.input.w as i32);
    let net = ImageNet::new(cfg)?;
    let ev = net.evaluate(&model.params, &images.x, &images.labels, 0)?;
    let wrong: Vec<usize> = (0..images.len()).filter(|&i| ev.predictions[i] != images.labels[i]).collect();
    let set: Option<ImageSet> = a.data.data.as_ref().or(model.metadata.get("dataset")).and_then(|d| d.parse().ok());
    let name = |k: u32| set.map_or(k.to_string(), |s| s.class_names()[k as usize].to_string());
    let shown = wrong.len().min(a.count);
    let rows = shown.div_ceil(COLS).max(1);
    let (cell_w, cell_h) = (w * SCALE + 24, h * SCALE + 40);
    let default = ((COLS as i32 * cell_w + 40) as u32, (rows as i32 * cell_h + 90) as u32);
    let size = a.image.size((default.0.max(200), default.1.max(200)))?;
    let title =
        format!("{} of {} misclassified ({:.2}% accuracy): {what}", wrong.len(), images.len(), 100.0 * ev.accuracy);
    render_png(&a.image.out, size, |root: &Area<'_>| {
        let area = heading(root, &title, 20.0, true)?;
        let label = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Center, VPos::Top));
        for (k, &i) in wrong.iter().take(shown).enumerate() {
            let (x0, y0) = (20 + (k % COLS) as i32 * cell_w, 10 + (k / COLS) as i32 * cell_h);
            let img = images.sample(i);
            for y in 0..h {
                for x in 0..w {
                    // Channel mean, dark ink on white as on paper.
                    let v: f32 = (0..c).map(|ch| img[(ch * h as usize + y as usize) * w as usize + x as usize]).sum();
                    let g = (255.0 * (1.0 - (v / c as f32).clamp(0.0, 1.0))).round() as u8;
                    let (px, py) = (x0 + x * SCALE, y0 + y * SCALE);
                    area.draw(&Rectangle::new([(px, py), (px + SCALE, py + SCALE)], RGBColor(g, g, g).filled()))?;
                }
            }
            let text = format!("{} → {}", name(images.labels[i]), name(ev.predictions[i]));
            area.draw_text(&text, &label, (x0 + w * SCALE / 2, y0 + h * SCALE + 4))?;
        }
        if shown == 0 {
            area.draw_text("every image is classified correctly", &label, (size.0 as i32 / 2, 40))?;
        }
        Ok(())
    })
}
