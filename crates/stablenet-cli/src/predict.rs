//! `stablenet predict` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct PredictArgs {}

pub fn run(_a: PredictArgs) -> Result<()> {
    bail!("stablenet predict is not implemented yet")
}
