//! Training runs that a researcher must be able to trust: a killed or Ctrl-C'd run resumes to
//! the very same model (bitwise, CPU), broken checkpoints and unwritable metrics fail clearly
//! without losing the last checkpoint, and data with NaN is refused.
mod common;
use common::meta;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stablenet"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stablenet-runs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A run long enough to interrupt (about a second), with two levels and a cosine schedule, and
/// a gradient method that is not the default (a resumed run must keep it).
#[rustfmt::skip]
const RUN: [&str; 15] = [
    "train", "--data", "peaks", "--levels", "8,16", "--epochs", "5", "--lr-final", "0.002", "--alpha-t", "0.001",
    "--batch-size", "32", "--seed=4", "--method=stored",
];

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

fn uninterrupted(d: &Path, backend: &str) -> Vec<u8> {
    let out = d.join("full.safetensors");
    let o = bin()
        .args(RUN)
        .args(["--backend", backend])
        .arg("--out")
        .arg(&out)
        .arg("--metrics")
        .arg(d.join("full.jsonl"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

/// Starts the run, waits until `after` epochs are logged, then interrupts it with `signal`.
fn interrupted(d: &Path, backend: &str, after: usize, signal: i32) -> (PathBuf, PathBuf, Option<i32>) {
    let (out, metrics) = (d.join("int.safetensors"), d.join("int.jsonl"));
    // A metrics file left by an earlier try would be counted before this run has started.
    let _ = std::fs::remove_file(&metrics);
    let mut child = bin()
        .args(RUN)
        .args(["--backend", backend])
        .arg("--out")
        .arg(&out)
        .arg("--metrics")
        .arg(&metrics)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while lines(&metrics) < after && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(lines(&metrics) >= after, "{backend}: the run logged {after} epochs within 60 s");
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    (out, metrics, status.code())
}

/// `--resume CHECKPOINT` alone, from another folder, as the interrupted run's hint says: the
/// checkpoint knows where the run wrote its model and metrics, and its gradient method.
fn resume(d: &Path, backend: &str) -> Vec<u8> {
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = bin()
        .current_dir(&elsewhere)
        .args(["train", "--backend", backend, "--resume"])
        .arg(d.join("int.ckpt.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!elsewhere.join("out").exists(), "the resumed run wrote to the default paths");
    std::fs::read(d.join("int.safetensors")).unwrap()
}

#[test]
fn resume_after_a_kill_gives_the_same_model() {
    let d = dir("kill");
    let full = uninterrupted(&d, "cpu");
    let (out, metrics, code) = interrupted(&d, "cpu", 3, libc::SIGKILL);
    assert_eq!(code, None, "killed by the signal, not finished");
    assert!(!out.exists(), "a killed run wrote no final model");
    let resumed = resume(&d, "cpu");
    assert!(resumed == full, "resumed model differs from the uninterrupted one");
    assert_eq!(lines(&metrics), 10, "every epoch logged once (2 levels x 5)");
}

/// Ctrl-C in the first epoch of a run whose folder does not exist yet: the folders are made
/// before training, so the checkpoint is written and the run resumes.
#[test]
fn ctrl_c_in_the_first_epoch_into_a_new_folder_keeps_the_run() {
    let d = dir("first-epoch");
    let out = d.join("new/sub/m.safetensors");
    // One long epoch (several seconds on 2 cores).
    #[rustfmt::skip]
    let long = ["train", "--backend", "cpu", "--data", "peaks", "--epochs", "1", "--width", "16", "--steps", "512"];
    let mut child = bin().args(long).arg("--out").arg(&out).stderr(Stdio::piped()).spawn().unwrap();
    // Signalled once the level has begun (the Ctrl-C handler is installed before the run's
    // first line), not after a fixed time: on a loaded machine that was too early.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(lines.any(|l| l.starts_with("level 1:")), "the run started its first level");
    // Keep reading: a closed pipe would end the run with SIGPIPE at its next message.
    let drain = std::thread::spawn(move || lines.count());
    assert!(d.join("new/sub").is_dir(), "the folders are made before training");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130), "Ctrl-C in the first epoch exits cleanly with 130");
    drain.join().unwrap();
    let ckpt = d.join("new/sub/m.ckpt.safetensors");
    assert!(ckpt.exists(), "the checkpoint of the interrupted epoch was written");
    assert!(!out.exists(), "no final model before the run ends");
}

/// A metrics file's lines without their wall-clock seconds.
fn metrics_lines(p: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for l in &mut lines {
        l.as_object_mut().unwrap().remove("seconds").expect("every line has its seconds");
    }
    lines
}

/// On the CPU and on the GPU (lavapipe in CI): the device's optimiser state travels in the
/// checkpoint, and its reductions are deterministic, so the resumed model is the same too.
/// The checkpoint holds the epoch's running sums, so the metrics are the same as well (but
/// for the seconds), the resumed epoch's line included.
#[test]
fn ctrl_c_saves_mid_epoch_and_resumes_exactly() {
    for backend in ["cpu", "gpu"] {
        let d = dir(&format!("int-{backend}"));
        let full = uninterrupted(&d, backend);
        // Ctrl-C stops after the batch in flight; one that lands on an epoch's last batch
        // (about 1 in 157) ends the epoch instead, and tests nothing inside: then again.
        let mut tries = 0;
        let metrics = loop {
            let (_, metrics, code) = interrupted(&d, backend, 6, libc::SIGINT);
            assert_eq!(code, Some(130), "{backend}: Ctrl-C exits cleanly with 130");
            let ckpt = d.join("int.ckpt.safetensors");
            tries += 1;
            if meta(&ckpt, "checkpoint_batch") != "0" {
                assert_ne!(meta(&ckpt, "checkpoint_seen"), "0", "{backend}: the epoch's sums are kept");
                break metrics;
            }
            assert!(tries < 3, "{backend}: three interruptions all fell on an epoch's end");
        };
        let resumed = resume(&d, backend);
        assert!(resumed == full, "{backend}: resumed model differs from the uninterrupted one");
        assert_eq!(lines(&metrics), 10, "{backend}: the resumed run appends to the run's metrics");
        assert_eq!(
            metrics_lines(&metrics),
            metrics_lines(&d.join("full.jsonl")),
            "{backend}: the resumed run's metrics differ from the uninterrupted run's"
        );
    }
}

#[test]
fn broken_checkpoints_and_full_disks_fail_clearly_and_keep_the_checkpoint() {
    let d = dir("broken");
    let out = d.join("m.safetensors");
    let short = ["train", "--backend", "cpu", "--data", "ellipses", "--epochs", "2"];
    // Metrics on a full disk: a clear error, and the checkpoint of the epoch is intact.
    let o = bin().args(short).arg("--out").arg(&out).args(["--metrics", "/dev/full"]).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("metrics") && e.contains("/dev/full"), "{e}");
    let ckpt = d.join("m.ckpt.safetensors");
    let good = std::fs::read(&ckpt).expect("the checkpoint was written before the metrics line");
    // A truncated checkpoint: a clear error naming it; the file is left as it was.
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() / 3]).unwrap();
    let o = bin().args(["train", "--resume"]).arg(&cut).arg("--out").arg(&out).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cut.safetensors"));
    assert_eq!(std::fs::read(&cut).unwrap().len(), good.len() / 3);
    // A model file that is not a checkpoint.
    let plain = d.join("plain.safetensors");
    let o = bin().args(short).arg("--out").arg(&plain).output().unwrap();
    assert!(o.status.success());
    let o = bin().args(["train", "--resume"]).arg(&plain).arg("--out").arg(&out).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("not a stablenet checkpoint"), "{e}");
    // The good checkpoint still resumes (with a metrics file other than its run's /dev/full).
    let metrics = d.join("m.jsonl");
    let o = bin().args(["train", "--resume"]).arg(&ckpt).arg("--out").arg(&out).arg("--metrics").arg(&metrics).output();
    let o = o.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists() && lines(&metrics) == 1, "the last epoch, logged to the file given");
    // The resumed checkpoint may be rewritten only as the run's checkpoint: metrics or a model
    // over it are refused before any work (metrics were once appended to it).
    let before = std::fs::read(&ckpt).unwrap();
    for flag in ["--metrics", "--out"] {
        let other = d.join("other.ckpt.safetensors");
        let mut cmd = bin();
        let o = cmd.args(["train", "--resume"]).arg(&ckpt).arg("--checkpoint").arg(&other).arg(flag).arg(&ckpt);
        let o = o.output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("both an input and an output"), "{flag}: {e}");
    }
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the checkpoint is intact");
}

#[test]
fn experiment_files_and_data_files() {
    let d = dir("exp");
    let exp = d.join("e.toml");
    std::fs::write(&exp, "data = \"ellipses\"\nintegrator = \"leapfrog\"\nwidth = 6\nsteps = 8\nepochs = 2\n").unwrap();
    // No output may be the experiment file (the metrics once replaced it).
    for flag in ["--metrics", "--out", "--checkpoint"] {
        let o = bin().args(["train", "--config"]).arg(&exp).arg(flag).arg(&exp).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("both an input and an output"), "{flag}: {e}");
    }
    assert!(std::fs::read_to_string(&exp).unwrap().starts_with("data = "), "the experiment file is intact");
    let out = d.join("m.safetensors");
    let o = bin()
        .args(["train", "--backend", "cpu", "--config"])
        .arg(&exp)
        .args(["--width", "5", "--levels", "2,4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = stablenet_core::io::load_model(&out).unwrap();
    assert_eq!(
        (m.config.width, m.config.steps, m.config.integrator.name()),
        (5, 4, "leapfrog"),
        "flags override the file (--levels its steps too)"
    );
    // A misspelt field is refused, naming it.
    std::fs::write(&exp, "widht = 6\n").unwrap();
    let o = bin().args(["train", "--config"]).arg(&exp).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("widht"));
    // A data file with a NaN: refused, naming the example.
    let data = d.join("nan.safetensors");
    let x: Vec<f32> = vec![0.1, 0.2, f32::NAN, 0.4];
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Vec<u8> = vec![0, 1];
    let views = [
        ("x", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &bytes).unwrap()),
        ("labels", safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2], &labels).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &data).unwrap();
    let o = bin().args(["train", "--data"]).arg(&data).arg("--out").arg(&out).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("sample 1"), "{e}");
    // The model may not be written over the data, nor the metrics.
    let before = std::fs::read(&data).unwrap();
    for flag in ["--out", "--metrics"] {
        let o = bin().args(["train", "--data"]).arg(&data).arg(flag).arg(&data).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("both an input and an output"), "{flag}: {e}");
    }
    assert_eq!(std::fs::read(&data).unwrap(), before, "the data file is intact");
    // Settings that would change nothing are refused.
    let o = bin().args(["train", "--data", "peaks", "--val-data"]).arg(&data).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("val_data"), "{e}");
}

/// `stablenet reproduce` on one experiment: the table row, the model and the three pictures.
#[test]
fn reproduce_runs_an_experiment_end_to_end() {
    let d = dir("reproduce");
    let exps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let o = bin()
        .args(["reproduce", "--backend", "cpu", "--only", "ellipses-leapfrog", "--experiments"])
        .arg(&exps)
        .arg("--out")
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = std::fs::read_to_string(d.join("RESULTS.md")).unwrap();
    let row = table.lines().find(|l| l.starts_with("| ellipses-leapfrog")).expect("a row for the experiment");
    let acc: f64 = row.split('|').nth(4).unwrap().trim().trim_end_matches('%').parse().unwrap();
    assert!(acc >= 98.5, "ellipses leapfrog validation accuracy {acc}% < 98.5%");
    for f in ["model.safetensors", "metrics.jsonl", "regions.png", "flow.png", "curves.png"] {
        let p = d.join("ellipses-leapfrog").join(f);
        assert!(std::fs::metadata(&p).map(|m| m.len() > 100).unwrap_or(false), "{} missing", p.display());
    }
    // A later experiment that fails (its data file is gone) leaves the rows before it in
    // RESULTS.md; a typo in any file stops the command before anything trains.
    let mine = d.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("a.toml"), "data = \"ellipses\"\nwidth = 4\nsteps = 4\nepochs = 1\n").unwrap();
    std::fs::write(mine.join("b.toml"), "data = \"/nonexistent/b.safetensors\"\nepochs = 1\n").unwrap();
    let out = d.join("partial");
    let o = bin().args(["reproduce", "--backend", "cpu", "--experiments"]).arg(&mine).arg("--out").arg(&out).output();
    let o = o.unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("b.safetensors"));
    let table = std::fs::read_to_string(out.join("RESULTS.md")).expect("the finished rows are kept");
    assert!(table.lines().any(|l| l.starts_with("| a |")) && !table.contains("| b |"), "{table}");
    std::fs::write(mine.join("b.toml"), "widht = 8\n").unwrap();
    let out = d.join("typo");
    let o = bin().args(["reproduce", "--backend", "cpu", "--experiments"]).arg(&mine).arg("--out").arg(&out).output();
    let e = String::from_utf8_lossy(&o.as_ref().unwrap().stderr).into_owned();
    assert!(!o.unwrap().status.success() && e.contains("b.toml") && e.contains("widht"), "{e}");
    assert!(!out.join("a").exists(), "nothing trained before the typo was found");
}

/// A run on a data file named relative to its folder resumes from any other folder: the
/// checkpoint's experiment names the file by absolute path.
#[test]
fn a_run_on_a_relative_data_file_resumes_from_elsewhere() {
    let d = dir("relative");
    let split = stablenet_core::data::Synthetic::Ellipses.generate(1);
    let bytes: Vec<u8> = split.train.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Vec<u8> = split.train.labels.iter().map(|&l| l as u8).collect();
    let n = split.train.len();
    let views = [
        ("x", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, 2], &bytes).unwrap()),
        ("labels", safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![n], &labels).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &d.join("train.safetensors")).unwrap();
    let o = bin()
        .current_dir(&d)
        .args(["train", "--backend", "cpu", "--data", "train.safetensors", "--epochs", "1", "--out", "m.safetensors"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.contains("on train-hamiltonian"), "{e}");
    // The run is complete, so the resume trains nothing, but it reads the data file again to
    // report the final accuracy: the same figure, read from elsewhere.
    let accuracy = |o: &std::process::Output| {
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.split("final:").nth(1).and_then(|t| t.split('(').next()).map(str::to_string).expect(&out)
    };
    let first = accuracy(&o);
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut resume = bin();
    resume.current_dir(&elsewhere).args(["train", "--backend", "cpu", "--resume"]).arg(d.join("m.ckpt.safetensors"));
    let o = resume.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(accuracy(&o), first, "the resumed run found the data and the model");
}

/// A tuned GPU run (lavapipe in CI) keeps its choice, the row its table marks, in its
/// checkpoints: Ctrl-C'd and resumed (with `--tune` again, as its command was), it goes on with
/// the kernels it had, without tuning again, and ends where a run pinned to them from the start
/// (`--kernels`) ends, bit for bit.
#[test]
fn a_tuned_run_resumes_on_its_kernels() {
    let d = dir("tuned");
    #[rustfmt::skip]
    let run = ["train", "--data", "peaks", "--width", "16", "--steps", "4", "--epochs", "4", "--batch-size", "64",
        "--seed=5", "--backend", "gpu"];
    let (out, metrics, ckpt) = (d.join("t.safetensors"), d.join("t.jsonl"), d.join("t.ckpt.safetensors"));
    let log = d.join("t.stderr");
    let mut tries = 0;
    let kernels = loop {
        let _ = std::fs::remove_file(&metrics);
        let mut child = bin()
            .args(run)
            .arg("--tune")
            .arg("--out")
            .arg(&out)
            .arg("--metrics")
            .arg(&metrics)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while lines(&metrics) < 1 && t0.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(lines(&metrics) >= 1, "the tuned run logged an epoch within 120 s");
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert_eq!(child.wait().unwrap().code(), Some(130), "Ctrl-C exits cleanly with 130");
        tries += 1;
        // As above: an interruption at an epoch's end tests nothing inside one.
        if meta(&ckpt, "checkpoint_batch") != "0" {
            assert_eq!(meta(&ckpt, "run_kernels"), "tune");
            let kernels = meta(&ckpt, "level_kernels");
            let table = std::fs::read_to_string(&log).unwrap();
            let marked: Vec<&str> = table.lines().filter(|l| l.starts_with("  * ")).collect();
            assert!(marked.len() == 1 && marked[0].contains(&format!("* {kernels} ")), "{kernels}: {table}");
            break kernels;
        }
        assert!(tries < 3, "three interruptions all fell on an epoch's end");
    };
    let o = bin().args(["train", "--backend", "gpu", "--tune", "--resume"]).arg(&ckpt).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("level 1: step kernels {kernels}")) && !err.contains("kernel tuning"), "{err}");
    let pinned = d.join("p.safetensors");
    let o = bin().args(run).args(["--kernels", &kernels, "--out"]).arg(&pinned).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let params = |p: &Path| stablenet_core::io::load_model(p).unwrap().params;
    assert!(params(&out) == params(&pinned), "the resumed tuned run ({kernels}) differs from the pinned one");
    // A setting that names nothing is refused before any work.
    let o =
        bin().args(run).args(["--kernels", "tiled fblock=5", "--out"]).arg(d.join("x.safetensors")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--kernels"));
}
