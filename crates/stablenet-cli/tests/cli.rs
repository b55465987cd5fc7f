//! The `stablenet` binary end to end: gradients against PyTorch autograd (fixtures made by
//! `benches/pytorch/make_fixtures.py`), clear errors on bad input, and a short training run.
use stablenet_core::compare;
use stablenet_core::io::{load_model, load_tensors};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stablenet"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/torch")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stablenet-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the stablenet binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Worst per-tensor relative error max|a - b| / max|b| of a gradient file against PyTorch's.
fn worst_error(ours: &Path, torch: &Path) -> f64 {
    let (a, _) = load_tensors(ours).unwrap();
    let (b, _) = load_tensors(torch).unwrap();
    assert_eq!(a.len(), b.len(), "same tensors as PyTorch's gradient file");
    let mut worst: f64 = 0.0;
    for tb in &b {
        let ta = a.iter().find(|t| t.name == tb.name).unwrap_or_else(|| panic!("missing {}", tb.name));
        assert_eq!(ta.shape, tb.shape, "{}", tb.name);
        // NaN-aware: a non-finite entry or a length mismatch is an infinite error.
        let (_, rel) = compare::errors(&ta.data, &tb.data);
        let scale = compare::max_abs(&tb.data);
        assert!(scale > 1e-8 || tb.name == "steps.weight", "fixture gradient {} is trivially zero", tb.name);
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn grad_agrees_with_pytorch_autograd() {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/torch exists")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".model.safetensors").map(String::from))
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "fixtures for every integrator: {cases:?}");
    for integrator in ["resnet", "antisym", "hamiltonian", "leapfrog"] {
        assert!(cases.iter().any(|c| c.starts_with(integrator)), "no fixture for {integrator}");
    }
    for case in &cases {
        let model = fixtures().join(format!("{case}.model.safetensors"));
        let reversible = ["hamiltonian", "leapfrog"].iter().any(|i| case.starts_with(i));
        let mut variants = vec![("cpu", "f64", "stored"), ("cpu", "f32", "stored"), ("gpu", "f32", "stored")];
        if reversible {
            variants.push(("cpu", "f32", "reverse"));
        }
        for (backend, precision, method) in variants {
            let out = tmp(&format!("{case}.{backend}.{precision}.{method}.grads.safetensors"));
            let o = run(bin()
                .args(["grad", "--backend", backend, "--precision", precision, "--method", method])
                .arg("--model")
                .arg(&model)
                .arg("--data")
                .arg(fixtures().join(format!("{case}.data.safetensors")))
                .arg("--out")
                .arg(&out));
            assert!(o.status.success(), "{case}: {}", stderr(&o));
            let err = worst_error(&out, &fixtures().join(format!("{case}.grads.safetensors")));
            println!("{case:<20} {backend} {precision} {method:<8} worst relative error {err:.2e}");
            assert!(err <= 1e-4, "{case} {backend} {precision} {method}: relative error {err:.2e} > 1e-4");
        }
    }
}

#[test]
fn grad_reports_bad_input_clearly() {
    let model = fixtures().join("hamiltonian.model.safetensors");
    let data = fixtures().join("hamiltonian.data.safetensors");
    let out = tmp("never.safetensors");
    // Missing file: the message names it.
    let o =
        run(bin().args(["grad", "--model", "no/such/model.safetensors", "--data"]).arg(&data).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no/such/model.safetensors"), "{}", stderr(&o));
    // A data file whose x has the wrong width for the model (its labels are fine).
    let d = load_model(&model).unwrap().config.d;
    let wrong = tmp("wide.data.safetensors");
    let x: Vec<u8> = (0..3 * (d + 1)).flat_map(|i| (i as f32 * 0.1).to_le_bytes()).collect();
    let views = [
        ("x", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, d + 1], &x).unwrap()),
        ("labels", safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![3], &[0, 1, 0]).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &wrong).unwrap();
    let o = run(bin().args(["grad", "--model"]).arg(&model).arg("--data").arg(&wrong).arg("--out").arg(&out));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("d = {d}")) && e.contains(&(d + 1).to_string()), "{e}");
    // A label outside the model's classes.
    let odd = fixtures().join("antisym_odd.data.safetensors");
    let o = run(bin().args(["grad", "--model"]).arg(&model).arg("--data").arg(&odd).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("label 3 of sample 2 is outside 0..3"), "{}", stderr(&o));
    // The model file used as data: no `x` tensor.
    let o = run(bin().args(["grad", "--model"]).arg(&model).arg("--data").arg(&model).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tensor x is missing"), "{}", stderr(&o));
    // A truncated model file.
    let bytes = std::fs::read(&model).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(bin().args(["grad", "--model"]).arg(&cut).arg("--data").arg(&data).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cut.safetensors"), "{}", stderr(&o));
    assert!(!out.exists(), "no output is written on error");
    // Reverse-time gradients do not exist for resnet.
    let o = run(bin()
        .args(["grad", "--method", "reverse", "--model"])
        .arg(fixtures().join("resnet.model.safetensors"))
        .arg("--data")
        .arg(fixtures().join("resnet.data.safetensors"))
        .arg("--out")
        .arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("backwards in time"), "{}", stderr(&o));
}

#[test]
fn train_writes_a_model_and_rejects_nonsense() {
    let out = tmp("trained.safetensors");
    let o = run(bin()
        .args(["train", "--data", "ellipses", "--integrator", "leapfrog", "--epochs", "8", "--backend", "cpu", "--out"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let acc: f64 = stdout
        .split("validation acc ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no validation accuracy in {stdout:?}"));
    assert!(acc > 90.0, "ellipses leapfrog after 8 epochs: {acc}%");
    let m = load_model(&out).unwrap();
    assert_eq!(m.config.integrator.name(), "leapfrog");
    assert!(m.extras.iter().any(|t| t.name.starts_with("optim.")), "optimiser state is saved");
    for (args, needle) in [
        (vec!["--steps", "0"], "steps"),
        (vec!["--final-time=-1"], "final time"),
        (vec!["--data", "cifar"], "peaks"),
        (vec!["--integrator", "rk4"], "hamiltonian"),
        (
            vec!["--backend", "gpu", "--device", "no-such-adapter"],
            "no adapter has a name containing \"no-such-adapter\"",
        ),
        (vec!["--lr", "0"], "learning rate"),
    ] {
        let o = run(bin().arg("train").args(&args).arg("--out").arg(tmp("bad.safetensors")));
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

/// `train --tune` on the GPU (lavapipe in CI) prints what it timed, marks what it chose and
/// trains with it; on the CPU it says there is nothing to tune and trains as without it.
#[test]
fn train_tune_times_the_gpu_kernels() {
    // w = 12 has one tiled plan at this batch size: the library test times several.
    let args = ["train", "--data", "ellipses", "--width", "12", "--steps", "4", "--epochs", "2", "--tune", "--out"];
    let o = run(bin().args(args).arg(tmp("tuned.safetensors")).args(["--backend", "gpu"]));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("level 1: kernel tuning, ") && err.contains(" ms per step"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("  * ")).count(), 1, "one chosen setting: {err}");
    assert!(load_model(&tmp("tuned.safetensors")).is_ok());
    let o = run(bin().args(args).arg(tmp("tuned-cpu.safetensors")).args(["--backend", "cpu"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("the CPU backend has none"), "{}", stderr(&o));
    // A pinned setting the model cannot run is refused before anything trains.
    let pinned = ["train", "--data", "ellipses", "--width", "12", "--kernels", "fused", "--backend", "gpu", "--out"];
    let o = run(bin().args(pinned).arg(tmp("never.safetensors")));
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("--kernels fused at level 1") && err.contains("w^2 + w"), "{err}");
    assert!(!err.contains("epoch"), "it trained first: {err}");
}

/// A two-level tuned run (lavapipe in CI) names what each level ran, in its model and in a hint;
/// pinned to those with `--kernels "A;B"`, a second run ends with the same parameters, bit for
/// bit. A count of settings that is neither one nor the levels' is refused.
#[test]
fn a_tuned_multilevel_run_can_be_pinned_level_by_level() {
    #[rustfmt::skip]
    let args = ["train", "--data", "ellipses", "--width", "16", "--levels", "4,8", "--epochs", "1",
        "--backend", "gpu", "--out"];
    let tuned = tmp("tuned2.safetensors");
    let o = run(bin().args(args).arg(&tuned).arg("--tune"));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("level 2: kernel tuning, "), "both levels tune: {err}");
    let pins = load_model(&tuned).unwrap().metadata["kernels_by_level"].clone();
    assert_eq!(pins.split(';').count(), 2, "{pins}");
    assert!(err.contains(&format!("--kernels \"{pins}\"")), "{err}");
    let pinned = tmp("pinned2.safetensors");
    let o = run(bin().args(args).arg(&pinned).args(["--kernels", &pins]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(load_model(&tuned).unwrap().params == load_model(&pinned).unwrap().params, "{pins}");
    let three = format!("{pins};fused");
    let o = run(bin().args(args).arg(tmp("never3.safetensors")).args(["--kernels", &three]));
    assert!(!o.status.success() && stderr(&o).contains("3 settings for 2 levels"), "{}", stderr(&o));
}
