//! `stablenet eval`, `predict` and `plot` end to end on a small model trained here: numbers
//! agree with the library, CSV round-trips, errors name the problem, and every plot is a PNG of
//! the requested size with text and several colours in it.
use safetensors::tensor::TensorView;
use stablenet_core::data::{Dataset, Synthetic};
use stablenet_core::io::save_model;
use stablenet_core::optim::OptimizerKind;
use stablenet_core::regularize::Regularizer;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, TrainConfig, Trainer, evaluate, logits};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stablenet-products-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tmp(name: &str) -> PathBuf {
    dir().join(name)
}

fn stablenet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stablenet")).args(args).output().expect("the stablenet binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "should have failed; stdout: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A hamiltonian network trained 3 epochs on ellipses (seed 1), saved with `dataset` metadata
/// like `stablenet train` writes, and the epochs' reports as a metrics file of JSON lines.
struct Fixture {
    model: PathBuf,
    metrics: PathBuf,
    cfg: ModelConfig,
    params: Params<f32>,
    val: Dataset,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let split = Synthetic::Ellipses.generate(1);
        let cfg = ModelConfig {
            d: 2,
            width: 6,
            steps: 8,
            final_time: 3.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 2,
        };
        let tc = TrainConfig {
            epochs: 3,
            batch_size: 64,
            optimizer: OptimizerKind::adam(0.02).unwrap(),
            regularizer: Regularizer::default(),
            seed: 3,
            method: None,
        };
        let mut trainer = Trainer::new(cfg.clone(), Params::<f32>::init(&cfg, 2), tc).unwrap();
        let mut lines = String::new();
        for _ in 0..3 {
            let r = trainer.run_epoch(&split.train, Some(&split.val), |_, _, _| true).unwrap();
            lines += &serde_json::to_string(&r).unwrap();
            lines.push('\n');
        }
        let (model, metrics) = (tmp("model.safetensors"), tmp("run.jsonl"));
        let meta = BTreeMap::from([("dataset".to_string(), "ellipses".to_string())]);
        save_model(&model, &cfg, &trainer.params, &[], &meta).unwrap();
        std::fs::write(&metrics, lines).unwrap();
        Fixture { model, metrics, params: trainer.params.clone(), cfg, val: split.val }
    })
}

/// x (f32 [n, d]) and labels (i64 [n]) as a safetensors data file.
fn write_data(path: &Path, x: &[f32], d: usize, labels: &[u32]) {
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let lb: Vec<u8> = labels.iter().flat_map(|l| (*l as i64).to_le_bytes()).collect();
    let views = vec![
        ("x", TensorView::new(safetensors::Dtype::F32, vec![x.len() / d, d], &xb).unwrap()),
        ("labels", TensorView::new(safetensors::Dtype::I64, vec![labels.len()], &lb).unwrap()),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(ok(o).trim()).unwrap()
}

#[test]
fn eval_matches_the_library_with_per_class_accuracy_and_confusion_matrix() {
    let f = fixture();
    let lib = evaluate(&f.cfg, &f.params, &f.val.x, &f.val.labels).unwrap();
    let v = json(&stablenet(&["eval", "--model", s(&f.model), "--data", "ellipses", "--seed", "1", "--json"]));
    assert_eq!(v["n"], 400);
    assert_eq!(v["loss"].as_f64().unwrap(), lib.loss);
    assert_eq!(v["accuracy"].as_f64().unwrap(), lib.accuracy);
    let conf: Vec<Vec<u64>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(conf.iter().flatten().sum::<u64>(), 400);
    assert_eq!((conf[0].iter().sum::<u64>(), conf[1].iter().sum::<u64>()), (200, 200));
    assert_eq!((conf[0][0] + conf[1][1]) as f64 / 400.0, lib.accuracy);
    assert_eq!(v["per_class_accuracy"][1].as_f64().unwrap(), conf[1][1] as f64 / 200.0);
    assert!(lib.accuracy > 0.7, "3 epochs learn ellipses: {}", lib.accuracy);

    // The model names its data set, so --data may be left out; --split train is the other half.
    let v = json(&stablenet(&["eval", "--model", s(&f.model), "--split", "train", "--json"]));
    assert_eq!(v["n"], 2000);
    assert!(v["data"].as_str().unwrap().contains("training split"));

    // The tables for a person.
    let text = ok(&stablenet(&["eval", "--model", s(&f.model)]));
    for want in ["accuracy", "class  examples  correct  accuracy", "confusion matrix (rows: true class", "200"] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn eval_reads_data_files_and_rejects_bad_sources() {
    let f = fixture();
    let data = tmp("val.safetensors");
    write_data(&data, &f.val.x, 2, &f.val.labels);
    let lib = evaluate(&f.cfg, &f.params, &f.val.x, &f.val.labels).unwrap();
    let v = json(&stablenet(&["eval", "--model", s(&f.model), "--data", s(&data), "--json"]));
    assert_eq!((v["n"].as_u64(), v["loss"].as_f64()), (Some(400), Some(lib.loss)));

    let e = fails(&stablenet(&["eval", "--model", s(&f.model), "--data", "spirals"]));
    assert!(e.contains("spirals") && e.contains("peaks, ellipses, swiss-roll"), "{e}");
    let e = fails(&stablenet(&["eval", "--model", s(&f.model), "--data", s(&data), "--split", "train"]));
    assert!(e.contains("--split applies to generated data"), "{e}");
    let wide = tmp("wide.safetensors");
    write_data(&wide, &[0.0; 9], 3, &[0, 1, 0]);
    let e = fails(&stablenet(&["eval", "--model", s(&f.model), "--data", s(&wide)]));
    assert!(e.contains("3 features") && e.contains("d = 2"), "{e}");
    let e = fails(&stablenet(&["eval", "--model", s(&f.model), "--data", "peaks"]));
    assert!(e.contains("outside the model's 2 classes"), "{e}");
    let e = fails(&stablenet(&["eval", "--model", "no/such/model.safetensors", "--data", "peaks"]));
    assert!(e.contains("no/such/model.safetensors"), "{e}");

    // A model trained on data files evaluates on its validation file by default, its training
    // file with --split train, from any folder (the model names them by absolute path).
    let train = tmp("train-part.safetensors");
    let part: Vec<usize> = (0..400).filter(|i| i % 8 < 3).collect(); // both classes
    let x: Vec<f32> = part.iter().flat_map(|&i| [f.val.x[2 * i], f.val.x[2 * i + 1]]).collect();
    write_data(&train, &x, 2, &part.iter().map(|&i| f.val.labels[i]).collect::<Vec<_>>());
    let model = tmp("on-files.safetensors");
    #[rustfmt::skip]
    ok(&stablenet(&["train", "--backend", "cpu", "--data", s(&train), "--val-data", s(&data), "--epochs", "1",
        "--width", "4", "--steps", "2", "--out", s(&model)]));
    let eval = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_stablenet"))
            .current_dir(std::env::temp_dir())
            .args(["eval", "--json", "--model", s(&model)])
            .args(extra)
            .output()
            .unwrap();
        json(&o)["n"].as_u64()
    };
    assert_eq!(eval(&[]), Some(400), "the validation file");
    assert_eq!(eval(&["--split", "train"]), Some(150), "the training file");
}

/// Parses `label,p0,p1` output into (label, probabilities).
fn parse_predictions(csv: &str, classes: usize) -> Vec<(usize, Vec<f64>)> {
    let mut lines = csv.lines();
    let header: Vec<String> = (0..classes).map(|k| format!("p{k}")).collect();
    assert_eq!(lines.next().unwrap(), format!("label,{}", header.join(",")));
    lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            assert_eq!(v.len(), classes + 1, "{l}");
            (v[0].parse().unwrap(), v[1..].iter().map(|p| p.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn predict_csv_round_trip_agrees_with_the_library() {
    let f = fixture();
    let n = 25;
    let x = &f.val.x[..2 * n];
    // A header, blank lines and spaces are allowed; `{}` writes f32s that parse back exactly.
    let mut csv = String::from("x1, x2\n");
    for p in x.chunks_exact(2) {
        csv += &format!("{}, {}\n\n", p[0], p[1]);
    }
    let input = tmp("in.csv");
    std::fs::write(&input, csv).unwrap();
    let out = tmp("pred/out.csv");
    let o = stablenet(&["predict", "--model", s(&f.model), "--input", s(&input), "--out", s(&out)]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("header"), "the skipped header is mentioned");
    let written = std::fs::read_to_string(&out).unwrap();
    let rows = parse_predictions(&written, 2);
    assert_eq!(rows.len(), n);
    let z = logits(&f.cfg, &f.params, x).unwrap();
    for ((label, p), zi) in rows.iter().zip(z.chunks_exact(2)) {
        let want = if zi[1] > zi[0] { 1 } else { 0 };
        assert_eq!(*label, want);
        let m = zi[0].max(zi[1]) as f64;
        let e: Vec<f64> = zi.iter().map(|v| (*v as f64 - m).exp()).collect();
        for (pk, ek) in p.iter().zip(&e) {
            assert!((pk - ek / (e[0] + e[1])).abs() <= 5e-7, "{pk} vs {}", ek / (e[0] + e[1]));
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 2e-6);
    }
    // Standard output carries the same CSV; safetensors input gives the same predictions.
    assert_eq!(ok(&stablenet(&["predict", "--model", s(&f.model), "--input", s(&input)])), written);
    let st = tmp("in.safetensors");
    write_data(&st, x, 2, &vec![0; n]);
    assert_eq!(ok(&stablenet(&["predict", "--model", s(&f.model), "--input", s(&st)])), written);
}

#[test]
fn predict_rejects_bad_input_clearly() {
    let f = fixture();
    let case = |name: &str, text: &str| -> String {
        let p = tmp(name);
        std::fs::write(&p, text).unwrap();
        fails(&stablenet(&["predict", "--model", s(&f.model), "--input", s(&p)]))
    };
    let e = case("cols.csv", "0.1,0.2\n0.3,0.4,0.5\n");
    assert!(e.contains("cols.csv") && e.contains("line 2 has 3 values") && e.contains("d = 2"), "{e}");
    let e = case("word.csv", "a,b\n0.1,0.2\n0.3,zero\n");
    assert!(e.contains("line 3, column 2") && e.contains("\"zero\" is not a number"), "{e}");
    let e = case("nan.csv", "0.1,0.2\nNaN,0.4\n");
    assert!(e.contains("line 2, column 1") && e.contains("NaN is not a finite number"), "{e}");
    let e = case("inf.csv", "1e39,0\n");
    assert!(e.contains("line 1, column 1") && e.contains("not a finite number"), "{e}");
    let e = case("empty.csv", "x1,x2\n");
    assert!(e.contains("no examples"), "{e}");
    // A bad first row is an error, not a header; a byte-order mark is not part of the data.
    let e = case("bad-first.csv", "0.1,abc\n0.2,0.3\n");
    assert!(e.contains("line 1, column 2") && e.contains("\"abc\" is not a number"), "{e}");
    let bom = tmp("bom.csv");
    std::fs::write(&bom, "\u{feff}0.1,0.2\n0.3,0.4\n").unwrap();
    let o = ok(&stablenet(&["predict", "--model", s(&f.model), "--input", s(&bom)]));
    assert_eq!(o.lines().count(), 3, "a header line and both examples: {o}");
    // The output may not be an input: the model would be lost.
    let copy = tmp("model-copy.safetensors");
    std::fs::copy(&f.model, &copy).unwrap();
    let e = fails(&stablenet(&["predict", "--model", s(&copy), "--input", s(&bom), "--out", s(&copy)]));
    assert!(e.contains("both an input and an output"), "{e}");
    let e = fails(&stablenet(&["plot", "curves", "--metrics", s(&f.metrics), "--out", s(&f.metrics)]));
    assert!(e.contains("both an input and an output"), "{e}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&f.model).unwrap(), "the model is intact");
    let e = fails(&stablenet(&["predict", "--model", s(&f.model), "--input", "no/such/input.csv"]));
    assert!(e.contains("no/such/input.csv"), "{e}");
    let wide = tmp("wide-in.safetensors");
    write_data(&wide, &[0.0; 6], 3, &[0, 1]);
    let e = fails(&stablenet(&["predict", "--model", s(&f.model), "--input", s(&wide)]));
    assert!(e.contains("3 columns") && e.contains("d = 2"), "{e}");
}

/// Decodes a PNG, checking the signature and the size; returns its RGB(A) pixels.
fn read_png(path: &Path, size: (u32, u32)) -> (Vec<[u8; 3]>, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size, "{}", path.display());
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = info.color_type.samples();
    let px = buf[..info.buffer_size()].chunks_exact(channels).map(|c| [c[0], c[1], c[2]]).collect();
    (px, info.width)
}

/// Not blank: many distinct colours, and dark text pixels in the title band at the top.
fn check_picture(path: &Path, size: (u32, u32), min_colours: usize) {
    let (px, w) = read_png(path, size);
    let colours: HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(colours.len() >= min_colours, "{}: only {} colours", path.display(), colours.len());
    let title_ink = px[..(w * 28) as usize].iter().filter(|p| p.iter().all(|c| *c < 90)).count();
    assert!(title_ink > 100, "{}: no title text ({title_ink} dark pixels)", path.display());
}

#[test]
fn plots_write_pngs_of_the_requested_size() {
    let f = fixture();
    let out = tmp("regions.png");
    ok(&stablenet(&["plot", "regions", "--model", s(&f.model), "--out", s(&out), "--width", "640", "--height", "500"]));
    check_picture(&out, (640, 500), 40);

    let out = tmp("plots/flow.png");
    let args = ["plot", "flow", "--model", s(&f.model), "--data", "ellipses", "--out", s(&out)];
    ok(&stablenet(&[&args[..], &["--width", "900", "--height", "380", "--points", "200"]].concat()));
    check_picture(&out, (900, 380), 40);
    let out = tmp("flow-coords.png");
    ok(&stablenet(&["plot", "flow", "--model", s(&f.model), "--projection", "coords", "--out", s(&out)]));
    let (px, _) = read_png(&out, (5 * 330 + 20, 330 + 110));
    assert!(px.iter().collect::<HashSet<_>>().len() > 40);

    let out = tmp("curves.png");
    ok(&stablenet(&[
        "plot",
        "curves",
        "--metrics",
        s(&f.metrics),
        "--out",
        s(&out),
        "--width",
        "700",
        "--height",
        "360",
    ]));
    check_picture(&out, (700, 360), 40);
    // Validation may be missing (null) in some or all epochs.
    let partial = tmp("partial.jsonl");
    std::fs::write(&partial, "{\"epoch\":1,\"train_loss\":0.7,\"train_acc\":0.5,\"val_loss\":null,\"val_acc\":null}\n")
        .unwrap();
    let out = tmp("curves-1.png");
    ok(&stablenet(&["plot", "curves", "--metrics", s(&partial), "--out", s(&out)]));
    check_picture(&out, (1100, 480), 20);
}

#[test]
fn plots_reject_what_they_cannot_draw() {
    let f = fixture();
    let cfg = ModelConfig { d: 3, ..f.cfg.clone() };
    let m3 = tmp("d3.safetensors");
    save_model(&m3, &cfg, &Params::init(&cfg, 1), &[], &BTreeMap::new()).unwrap();
    let out = tmp("never.png");
    let e = fails(&stablenet(&["plot", "regions", "--model", s(&m3), "--data", "peaks", "--out", s(&out)]));
    assert!(e.contains("2-D input plane") && e.contains("d = 3"), "{e}");
    let e = fails(&stablenet(&["plot", "flow", "--model", s(&m3), "--out", s(&out)]));
    assert!(e.contains("no --data given"), "{e}");
    let bad = tmp("bad.jsonl");
    std::fs::write(&bad, "{\"epoch\":1,\"train_loss\":0.7,\"train_acc\":0.5}\n{\"epoch\":2,\"train_acc\":0.5}\n")
        .unwrap();
    let e = fails(&stablenet(&["plot", "curves", "--metrics", s(&bad), "--out", s(&out)]));
    assert!(e.contains("bad.jsonl: line 2: no train_loss"), "{e}");
    let e = fails(&stablenet(&["plot", "curves", "--metrics", s(&f.metrics), "--out", s(&out), "--width", "10"]));
    assert!(e.contains("--width 10"), "{e}");
    assert!(!out.exists());
    // The picture may not replace the data file it is drawn from: given by --data, or named
    // by the model as its data (the picture once replaced the data file).
    let data = tmp("plot-data.safetensors");
    write_data(&data, &f.val.x, 2, &f.val.labels);
    let before = std::fs::read(&data).unwrap();
    let e = fails(&stablenet(&["plot", "regions", "--model", s(&f.model), "--data", s(&data), "--out", s(&data)]));
    assert!(e.contains("both an input and an output"), "{e}");
    let m = tmp("names-its-data.safetensors");
    let meta = BTreeMap::from([("dataset".to_string(), s(&data).to_string())]);
    save_model(&m, &f.cfg, &f.params, &[], &meta).unwrap();
    let e = fails(&stablenet(&["plot", "flow", "--model", s(&m), "--out", s(&data)]));
    assert!(e.contains("both an input and an output"), "{e}");
    assert_eq!(std::fs::read(&data).unwrap(), before, "the data file is intact");
}

/// A result that cannot be written to standard output (a full disk) is an error naming it,
/// not a panic.
#[cfg(target_os = "linux")]
#[test]
fn results_to_a_full_stdout_are_an_error() {
    let f = fixture();
    let csv = tmp("full.csv");
    std::fs::write(&csv, "0.1,0.2\n").unwrap();
    for args in [
        vec!["eval", "--model", s(&f.model)],
        vec!["eval", "--model", s(&f.model), "--json"],
        vec!["inspect", s(&f.model), "--json"],
        vec!["predict", "--model", s(&f.model), "--input", s(&csv)],
    ] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_stablenet")).args(&args).stdout(full).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("standard output") && e.contains("No space left"), "{args:?}: {e}");
    }
}
