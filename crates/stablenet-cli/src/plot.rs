//! `stablenet plot` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct PlotArgs {}

pub fn run(_a: PlotArgs) -> Result<()> {
    bail!("stablenet plot is not implemented yet")
}

/// The pictures of a finished run (filled in with the plotting work).
pub fn pictures(_o: &crate::train::Outcome, _dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    Ok(Vec::new())
}
