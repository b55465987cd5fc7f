//! `stablenet inspect` (in progress).
use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct InspectArgs {}

pub fn run(_a: InspectArgs) -> Result<()> {
    bail!("stablenet inspect is not implemented yet")
}
