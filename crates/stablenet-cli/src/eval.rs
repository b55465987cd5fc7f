//! `stablenet eval` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {}

pub fn run(_a: EvalArgs) -> Result<()> {
    bail!("stablenet eval is not implemented yet")
}
