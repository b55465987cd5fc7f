//! `stablenet plot` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct PlotArgs {}

pub fn run(_a: PlotArgs) -> Result<()> {
    bail!("stablenet plot is not implemented yet")
}
