//! Image networks end to end on a small synthetic IDX set (CI has no MNIST): `train` from an
//! experiment file learns it, `eval` agrees, `plot misclassified` draws, a resumed run ends
//! with the same model as an uninterrupted one, and bad input is named.
mod common;
use common::meta;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stablenet-images-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stablenet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stablenet"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the stablenet binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Four classes of 28x28 strokes at random places (horizontal bar, vertical bar, diagonal,
/// hollow square) on a faint noise, written as the MNIST file names under `root/mnist`.
fn write_idx(root: &Path, n_train: usize, n_test: usize) {
    let d = root.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let mut state = 12345u64;
    let mut rnd = move |m: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % m) as usize
    };
    for (stem, n) in [("train", n_train), ("t10k", n_test)] {
        let mut img = vec![0, 0, 8, 3];
        let mut lab = vec![0, 0, 8, 1];
        for v in [n as u32, 28, 28] {
            img.extend(v.to_be_bytes());
        }
        lab.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let k = i % 4;
            let mut px = [0u8; 784];
            for p in px.iter_mut() {
                *p = rnd(40) as u8;
            }
            let (r0, c0) = (4 + rnd(12), 4 + rnd(12));
            for t in 0..10 {
                let cells: Vec<(usize, usize)> = match k {
                    0 => vec![(r0 + 4, c0 + t), (r0 + 5, c0 + t)],
                    1 => vec![(r0 + t, c0 + 4), (r0 + t, c0 + 5)],
                    2 => vec![(r0 + t, c0 + t), (r0 + t, c0 + t.saturating_sub(1))],
                    _ => vec![(r0, c0 + t), (r0 + 9, c0 + t), (r0 + t, c0), (r0 + t, c0 + 9)],
                };
                for (r, c) in cells {
                    px[r * 28 + c] = 255;
                }
            }
            img.extend(px);
            lab.push(k as u8);
        }
        std::fs::write(d.join(format!("{stem}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(d.join(format!("{stem}-labels-idx1-ubyte")), lab).unwrap();
    }
}

/// The synthetic set (640 training, 200 test images) under `root` and an experiment that
/// learns it: hamiltonian, relu, channels 4 and 8, levels N = 1 then 2, 3 epochs each.
/// Starts `train` with `flags`, waits until its metrics have `lines` epochs, then sends
/// `signal`; returns its exit code.
fn interrupt(flags: &[&str], out: &Path, metrics: &Path, lines: usize, signal: i32) -> Option<i32> {
    // A metrics file left by an earlier try would be counted before this run has started.
    let _ = std::fs::remove_file(metrics);
    let mut child = Command::new(env!("CARGO_BIN_EXE_stablenet"))
        .arg("train")
        .args(flags)
        .args(["--out", out.to_str().unwrap(), "--metrics", metrics.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = || std::fs::read_to_string(metrics).map(|t| t.lines().count()).unwrap_or(0);
    let t0 = Instant::now();
    while count() < lines && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(count() >= lines, "the run logged {lines} epochs within 120 s");
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap().code()
}

fn shapes_experiment(root: &Path) -> PathBuf {
    write_idx(root, 640, 200);
    let data_dir = root.to_str().unwrap();
    let exp = root.join("shapes.toml");
    std::fs::write(
        &exp,
        format!(
            "data = \"mnist\"\ndata_dir = \"{data_dir}\"\nintegrator = \"hamiltonian\"\nactivation = \"relu\"\nchannels = [4, 8]\n\
             levels = [1, 2]\nfinal_time = 1.0\nlr = 0.02\nepochs = 3\nbatch_size = 32\nseed = 3\n"
        ),
    )
    .unwrap();
    exp
}

#[test]
fn image_network_trains_evaluates_plots_and_resumes() {
    let root = dir();
    let exp = shapes_experiment(&root);
    let out = root.join("model.safetensors");
    let metrics = root.join("metrics.jsonl");
    let (e, o, m) = (exp.to_str().unwrap(), out.to_str().unwrap(), metrics.to_str().unwrap());
    let text = ok(&stablenet(&["train", "--config", e, "--backend", "cpu", "--out", o, "--metrics", m]));
    assert!(text.contains("final"), "{text}");
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines.lines().count(), 6, "3 epochs at each of 2 levels:\n{lines}");

    // eval --json agrees with what train recorded, and the set is learnt.
    let ev: serde_json::Value = serde_json::from_str(&ok(&stablenet(&["eval", "--model", o, "--json"]))).unwrap();
    let acc = ev["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "test accuracy {acc} on the synthetic shapes");
    assert_eq!(ev["n"], 200);
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert!((last["val_acc"].as_f64().unwrap() - acc).abs() < 1e-12, "{last} vs {acc}");
    // The last checkpoint holds the same parameters and names its data through the experiment
    // stored inside it.
    let ckpt = root.join("model.ckpt.safetensors");
    let ev: serde_json::Value =
        serde_json::from_str(&ok(&stablenet(&["eval", "--model", ckpt.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(ev["accuracy"].as_f64().unwrap(), acc, "the checkpoint evaluates like the model");

    let png = root.join("mis.png");
    ok(&stablenet(&["plot", "misclassified", "--model", o, "--out", png.to_str().unwrap()]));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    // A run killed (SIGKILL) inside level 2 and resumed from its checkpoint ends with the
    // same model, byte for byte.
    let (out2, metrics2) = (root.join("killed.safetensors"), root.join("killed.jsonl"));
    let code = interrupt(&["--config", e, "--backend", "cpu"], &out2, &metrics2, 4, libc::SIGKILL);
    assert_eq!(code, None, "killed, not finished");
    let before = std::fs::read_to_string(&metrics2).unwrap();
    assert!(!out2.exists(), "killed inside level 2, not after the run:\n{before}");
    let ck = root.join("killed.ckpt.safetensors");
    ok(&stablenet(&["train", "--resume", ck.to_str().unwrap(), "--backend", "cpu", "--out", out2.to_str().unwrap()]));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&out2).unwrap(), "resumed model differs");
    // The resumed run appends the epochs it trained to the same metrics, which read as the
    // uninterrupted run's (but for the seconds).
    let after = std::fs::read_to_string(&metrics2).unwrap();
    assert!(after.starts_with(&before), "the resumed run kept the killed run's lines");
    let strip = |t: &str| -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = t.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        v.iter_mut().for_each(|l| drop(l.as_object_mut().unwrap().remove("seconds")));
        v
    };
    assert_eq!(strip(&after), strip(&lines), "the resumed run's metrics differ from the uninterrupted run's");

    // Bad input is named.
    let missing = stablenet(&["train", "--data", "mnist", "--data-dir", "/nonexistent", "--out", o]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("xtask data"), "{err}");
    let bad = stablenet(&["train", "--config", e, "--channels", "4,8,8,8", "--out", o]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("divisible by 8"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

/// The CPU test's run on the GPU (lavapipe in CI, `--fallback`): it learns, the
/// CPU's `eval` agrees with the GPU's test accuracy, and the GPU checkpoint (optimiser state
/// included) resumes on the CPU.
#[test]
fn image_network_trains_on_the_gpu() {
    // Not under dir(): the CPU test removes that when it ends. The relu + Adam trajectories of
    // the two backends part after a few epochs (f32 round-off, as any two summation orders), so
    // the run must learn from more than one seed: this one reached >= 96% on the CPU for seeds
    // 3 to 6 and 100% on lavapipe (seed 3).
    let root = std::env::temp_dir().join(format!("stablenet-images-gpu-test-{}", std::process::id()));
    let exp = shapes_experiment(&root);
    let out = root.join("model.safetensors");
    let metrics = root.join("metrics.jsonl");
    let (e, o, m) = (exp.to_str().unwrap(), out.to_str().unwrap(), metrics.to_str().unwrap());
    let t0 = Instant::now();
    let run = stablenet(&["train", "--config", e, "--backend", "gpu", "--fallback", "--out", o, "--metrics", m]);
    let text = ok(&run);
    let err = String::from_utf8_lossy(&run.stderr);
    println!("GPU training: {:.1}s\n{err}", t0.elapsed().as_secs_f64());
    assert!(text.contains("final") && err.contains("on GPU"), "{text}\n{err}");
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines.lines().count(), 6, "3 epochs at each of 2 levels:\n{lines}");
    let ev: serde_json::Value = serde_json::from_str(&ok(&stablenet(&["eval", "--model", o, "--json"]))).unwrap();
    let acc = ev["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "test accuracy {acc} on the synthetic shapes, trained on the GPU");
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert!((last["val_acc"].as_f64().unwrap() - acc).abs() <= 0.011, "{last} vs {acc} (CPU eval)");

    // The same run stopped by Ctrl-C inside level 2 (a checkpoint written by the GPU, with its
    // Adam state and the epoch's running sums) continues on the CPU: the GPU's epochs match the
    // run above, the step count runs on, and the model still learns.
    let (out2, metrics2) = (root.join("resumed.safetensors"), root.join("resumed.jsonl"));
    let ck = root.join("resumed.ckpt.safetensors");
    // Ctrl-C stops after the batch in flight; one that lands on an epoch's end tests no
    // running sums: then again.
    for tries in 1.. {
        let code = interrupt(&["--config", e, "--backend", "gpu", "--fallback"], &out2, &metrics2, 4, libc::SIGINT);
        assert_eq!(code, Some(130), "Ctrl-C inside level 2 exits with 130");
        if meta(&ck, "checkpoint_batch") != "0" {
            assert_ne!(meta(&ck, "checkpoint_seen"), "0", "the stopped epoch's sums are in the checkpoint");
            break;
        }
        assert!(tries < 3, "three interruptions all fell on an epoch's end");
    }
    ok(&stablenet(&["train", "--resume", ck.to_str().unwrap(), "--backend", "cpu"]));
    let strip = |t: &str| -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = t.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        v.iter_mut().for_each(|l| drop(l.as_object_mut().unwrap().remove("seconds")));
        v
    };
    let (full, resumed) = (strip(&lines), strip(&std::fs::read_to_string(&metrics2).unwrap()));
    assert_eq!(resumed.len(), 6, "every epoch logged once: {resumed:?}");
    assert_eq!(resumed[..4], full[..4], "the GPU's epochs are the same in both runs");
    assert_eq!(resumed[5]["steps"], full[5]["steps"], "the optimiser's step count ran on across backends");
    let ev: serde_json::Value =
        serde_json::from_str(&ok(&stablenet(&["eval", "--model", out2.to_str().unwrap(), "--json"]))).unwrap();
    let acc2 = ev["accuracy"].as_f64().unwrap();
    assert!(acc2 >= 0.9, "test accuracy {acc2} after resuming the GPU's run on the CPU");
    std::fs::remove_dir_all(&root).ok();
}
