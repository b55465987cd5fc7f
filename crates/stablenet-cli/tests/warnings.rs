//! What `stablenet train` tells a user whose setting is unsafe: a step outside the stable
//! region is a warning before training (and a stable run has none), and a run that diverges
//! fails with that word, writes no final model, and leaves its last checkpoint readable.
mod common;
use common::meta;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stablenet"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stablenet-warnings-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> (Output, String) {
    let o = cmd.output().expect("the stablenet binary runs");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, e)
}

/// A short run on peaks (one epoch of 5000 examples, well under a second on the CPU).
fn train(out: &Path, flags: &[&str]) -> (Output, String) {
    run(bin().args(["train", "--backend", "cpu", "--data", "peaks", "--epochs", "1"]).args(flags).arg("--out").arg(out))
}

#[test]
fn an_unstable_step_is_a_warning_before_training_and_a_stable_one_is_not() {
    let d = dir("warn");
    // h = 50 in one step: h s_max(K_0) is ~90 for the initial K (s_max ~ 1.7 at width 8),
    // far outside the Verlet bound h s_max < 2 (MODEL.md section 7).
    let (o, e) =
        train(&d.join("big-h.safetensors"), &["--integrator", "hamiltonian", "--steps", "1", "--final-time", "50"]);
    assert!(o.status.success(), "a warning does not stop the run: {e}");
    let warning = e.lines().find(|l| l.starts_with("warning: ")).unwrap_or_else(|| panic!("no warning: {e}"));
    assert!(warning.starts_with("warning: hamiltonian: h * s_max(K_0) = "), "{warning}");
    assert!(warning.contains(">= 2 (h = 50.0000") && warning.contains("outside the stable region"), "{warning}");
    assert!(warning.contains("Use more steps or a smaller T"), "the warning says what to do: {warning}");
    // Printed when the level starts, before its first epoch, not after the damage.
    let at = |what: &str| e.find(what).unwrap_or_else(|| panic!("no {what:?} in {e}"));
    assert!(at("warning: ") < at("level 1:") && at("level 1:") < at("epoch    1"), "{e}");

    // Forward Euler on a purely imaginary spectrum: the antisymmetric net without damping.
    let (o, e) = train(&d.join("undamped.safetensors"), &["--integrator", "antisym", "--gamma", "0"]);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("warning: antisym with gamma = 0"), "{e}");

    // The defaults (N = 16, T = 5: h s_max ~ 0.5) are stable for the Verlet integrators: no
    // warning. (Not antisym: its default damping, gamma = 0.05, is below its bound at h = 0.3125.)
    for integrator in ["hamiltonian", "leapfrog"] {
        let (o, e) = train(&d.join(format!("{integrator}.safetensors")), &["--integrator", integrator]);
        assert!(o.status.success(), "{integrator}: {e}");
        assert!(!e.contains("warning: "), "{integrator}: a stable run warned: {e}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// SGD with lr 100 on a relu resnet, one batch per epoch: the weights grow ~100x per step and
/// the features overflow f32: on the validation set after epoch 3 (its training loss still
/// finite, ~3e27), in training in epoch 4; the same on both backends (measured).
#[rustfmt::skip]
const DIVERGES: [&str; 16] = [
    "train", "--data", "peaks", "--integrator", "resnet", "--activation", "relu", "--optimizer", "sgd", "--lr", "100",
    "--batch-size", "5000", "--epochs", "4", "--seed=1",
];

#[test]
fn a_diverging_run_fails_without_a_model_and_keeps_the_last_checkpoint() {
    for backend in ["cpu", "gpu"] {
        let d = dir(&format!("diverge-{backend}"));
        let (out, metrics) = (d.join("m.safetensors"), d.join("m.jsonl"));
        let ckpt = d.join("m.ckpt.safetensors");
        let (o, e) = run(bin()
            .args(DIVERGES)
            .args(["--backend", backend])
            .arg("--out")
            .arg(&out)
            .arg("--metrics")
            .arg(&metrics));
        assert_eq!(o.status.code(), Some(1), "{backend}: {e}");
        let last = e.lines().last().unwrap_or_default();
        // A finite training loss with parameters that overflow on the validation set is
        // divergence too (such a model was once written, at 20% accuracy, after "val loss NaN").
        assert!(last.starts_with("error: the val loss after epoch 3 is NaN: the training diverged"), "{backend}: {e}");
        assert!(last.contains("Lower the learning rate"), "{backend}: {last}");
        assert!(!out.exists(), "{backend}: a diverged run wrote a final model");

        // The checkpoint is the one after the last good epoch, and it loads.
        assert_eq!(meta(&ckpt, "checkpoint_epoch"), "2", "{backend}");
        assert_eq!(meta(&ckpt, "checkpoint_batch"), "0", "{backend}");
        let lines = std::fs::read_to_string(&metrics).unwrap().lines().count();
        assert_eq!(lines, 2, "{backend}: one metrics line per good epoch, none for the diverged one");
        let model = stablenet_core::io::load_model(&ckpt).expect("the checkpoint holds finite parameters");
        assert_eq!((model.config.steps, model.config.width), (16, 8), "{backend}");
        let (o, e) = run(bin().arg("inspect").arg(&ckpt));
        assert!(o.status.success(), "{backend}: inspect on the checkpoint: {e}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("resnet network: width 8, N = 16"), "{backend}");

        // Resumed, it runs the same epoch 3 and diverges again: an error, and the checkpoint
        // and the missing model are as they were.
        let before = std::fs::read(&ckpt).unwrap();
        let (o, e) = run(bin().args(["train", "--backend", backend, "--resume"]).arg(&ckpt));
        assert_eq!(o.status.code(), Some(1), "{backend}: resumed: {e}");
        assert!(e.contains("the val loss after epoch 3 is NaN: the training diverged"), "{backend}: resumed: {e}");
        assert!(std::fs::read(&ckpt).unwrap() == before, "{backend}: the failed resume rewrote the checkpoint");
        assert!(!out.exists(), "{backend}: the failed resume wrote a final model");

        let _ = std::fs::remove_dir_all(&d);
    }
}
