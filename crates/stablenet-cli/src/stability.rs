//! `stablenet stability` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct StabilityArgs {}

pub fn run(_a: StabilityArgs) -> Result<()> {
    bail!("stablenet stability is not implemented yet")
}
