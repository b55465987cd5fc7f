//! Tests of the file formats; bad files are built with the raw safetensors serializer.
use super::*;
use crate::config::{Activation, Integrator, ModelConfig};
use crate::params::{GROUP_NAMES, Params};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stablenet-io-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(integrator: Integrator, activation: Activation) -> ModelConfig {
    ModelConfig {
        d: 3,
        width: 5,
        steps: 4,
        final_time: 0.1 + 0.2, // not a short decimal: tests the exact round trip
        integrator,
        activation,
        gamma: if integrator == Integrator::Antisym { 1e-3 / 3.0 } else { 0.0 },
        classes: 2,
    }
}

/// Initial parameters with non-zero biases, so every group carries distinct values.
fn params(cfg: &ModelConfig, seed: u64) -> Params<f32> {
    let mut p = Params::<f32>::init(cfg, seed);
    let mut v = 0.37f32;
    for x in p.b_in.iter_mut().chain(&mut p.b).chain(&mut p.mu) {
        v = -v * 1.1;
        *x = v;
    }
    p
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A raw tensor for the bad-file builder.
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn raw_f32(name: &str, shape: &[usize], data: &[f32]) -> Raw {
    Raw {
        name: name.into(),
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// The six model tensors of a valid (d=3, w=5, N=4, C=2) model.
fn model_tensors() -> Vec<Raw> {
    let cfg = config(Integrator::Hamiltonian, Activation::Tanh);
    let p = params(&cfg, 7);
    p.groups().into_iter().map(|(name, data)| raw_f32(name, &p.group_shape(name), data)).collect()
}

fn model_meta() -> Vec<(&'static str, &'static str)> {
    vec![("integrator", "hamiltonian"), ("final_time", "2.5"), ("activation", "tanh"), ("gamma", "0")]
}

fn write_raw(path: &Path, tensors: &[Raw], meta: Option<&[(&str, &str)]>) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            let v = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap();
            (t.name.as_str(), v)
        })
        .collect();
    let meta: Option<HashMap<String, String>> =
        meta.map(|m| m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

/// Asserts that `result` failed with a message naming the file and every needle.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(result: Result<T>, path: &Path, needles: &[&str]) {
    let msg = result.expect_err("expected an error").to_string();
    assert!(msg.contains(&path.display().to_string()), "error does not name the file: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error lacks {n:?}: {msg}");
    }
}

fn with_tensor(mut ts: Vec<Raw>, t: Raw) -> Vec<Raw> {
    ts.retain(|x| x.name != t.name);
    ts.push(t);
    ts
}

#[test]
fn io_model_round_trip_is_bit_exact_for_every_integrator_and_activation() {
    let dir = TempDir::new("roundtrip");
    for (i, integrator) in Integrator::ALL.into_iter().enumerate() {
        for activation in [Activation::Tanh, Activation::Relu] {
            let cfg = config(integrator, activation);
            let p = params(&cfg, 11 + i as u64);
            let extras = vec![
                Tensor::new("optim.m.steps.weight", vec![4, 5, 5], p.k.iter().map(|x| x * 0.5).collect()),
                Tensor::new("optim.step", vec![], vec![17.0]),
                Tensor::new("optim.empty", vec![0, 3], vec![]),
            ];
            let meta: BTreeMap<String, String> =
                [("epoch", "3"), ("note", "ünïcode ok")].map(|(k, v)| (k.into(), v.into())).into();
            let path = dir.path(&format!("{integrator}-{activation}.safetensors"));
            save_model(&path, &cfg, &p, &extras, &meta).unwrap();
            let m = load_model(&path).unwrap();
            assert_eq!(m.config, cfg);
            assert_eq!(m.config.final_time.to_bits(), cfg.final_time.to_bits());
            assert_eq!(m.config.gamma.to_bits(), cfg.gamma.to_bits());
            for ((name, a), (_, b)) in m.params.groups().into_iter().zip(p.groups()) {
                assert_eq!(bits(a), bits(b), "{name}");
            }
            let mut want = extras.clone();
            want.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(m.extras, want);
            assert_eq!(m.metadata, meta);
        }
    }
}

#[test]
fn io_saved_model_follows_the_pytorch_convention() {
    let dir = TempDir::new("convention");
    let cfg = config(Integrator::Antisym, Activation::Relu);
    let p = params(&cfg, 3);
    let path = dir.path("m.safetensors");
    let extras = [Tensor::new("optim.v", vec![2], vec![1.0, 2.0])];
    save_model(&path, &cfg, &p, &extras, &BTreeMap::new()).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let mut want: Vec<&str> = GROUP_NAMES.into();
    want.push("optim.v");
    want.sort();
    assert_eq!(names, want);
    let (d, w, n, c) = (cfg.d, cfg.width, cfg.steps, cfg.classes);
    let shapes: [(&str, Vec<usize>); 6] = [
        ("opening.weight", vec![w, d]),
        ("opening.bias", vec![w]),
        ("steps.weight", vec![n, w, w]),
        ("steps.bias", vec![n, w]),
        ("classifier.weight", vec![c, w]),
        ("classifier.bias", vec![c]),
    ];
    for (name, shape) in shapes {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        assert_eq!(t.shape(), &shape[..], "{name}");
    }
    // steps.weight[j] is K_j, row-major (row r, column s at j*w*w + r*w + s).
    let sw = raw::decode_f32(st.tensor("steps.weight").unwrap().data());
    for j in 0..n {
        assert_eq!(bits(&sw[j * w * w..(j + 1) * w * w]), bits(p.k_step(j)));
    }
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["integrator"], "antisym");
    assert_eq!(meta["activation"], "relu");
    assert_eq!(meta["final_time"].parse::<f64>().unwrap(), cfg.final_time);
    assert_eq!(meta["gamma"].parse::<f64>().unwrap(), cfg.gamma);
    assert_eq!(meta.len(), 4);

    // Same input, same bytes: the header does not depend on hash order.
    let again = dir.path("again.safetensors");
    let many: BTreeMap<String, String> = (0..20).map(|i| (format!("k{i}"), i.to_string())).collect();
    save_model(&path, &cfg, &p, &extras, &many).unwrap();
    save_model(&again, &cfg, &p, &extras, &many).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn io_model_written_elsewhere_loads_with_gamma_default_and_unknown_extras() {
    let dir = TempDir::new("foreign");
    let path = dir.path("torch.safetensors");
    let mut ts = model_tensors();
    ts.push(raw_f32("optim.exp_avg.opening.weight", &[5, 3], &[0.25; 15]));
    ts.push(Raw { name: "optim.step".into(), dtype: Dtype::I64, shape: vec![], bytes: 5i64.to_le_bytes().to_vec() });
    let meta = [("integrator", "leapfrog"), ("final_time", "5"), ("activation", "tanh"), ("format", "pt")];
    write_raw(&path, &ts, Some(&meta));
    let m = load_model(&path).unwrap();
    assert_eq!(m.config.gamma, 0.0);
    assert_eq!(m.config.final_time, 5.0);
    assert_eq!(m.config.integrator, Integrator::Leapfrog);
    assert_eq!((m.config.d, m.config.width, m.config.steps, m.config.classes), (3, 5, 4, 2));
    // The F32 extra comes back; the I64 one is skipped (with a warning), not rejected.
    assert_eq!(m.extras.len(), 1);
    assert_eq!(m.extras[0].name, "optim.exp_avg.opening.weight");
    assert_eq!(m.metadata, [("format".to_string(), "pt".to_string())].into());
}

#[test]
fn io_model_with_bad_tensors_is_rejected_naming_the_tensor() {
    let dir = TempDir::new("badtensors");
    let path = dir.path("bad.safetensors");
    let meta = model_meta();
    let check = |ts: Vec<Raw>, needles: &[&str]| {
        write_raw(&path, &ts, Some(&meta));
        assert_err(load_model(&path), &path, needles);
    };
    for name in GROUP_NAMES {
        let ts = model_tensors().into_iter().filter(|t| t.name != name).collect();
        check(ts, &[name, "missing"]);
    }
    check(
        with_tensor(model_tensors(), raw_f32("steps.bias", &[4, 6], &[0.0; 24])),
        &["steps.bias", "[4, 6]", "expected [4, 5]"],
    );
    // Inconsistent widths between tensors: the expectation comes from opening.weight.
    check(
        with_tensor(model_tensors(), raw_f32("classifier.weight", &[2, 4], &[0.0; 8])),
        &["classifier.weight", "[2, 4]", "expected [2, 5]", "opening.weight"],
    );
    check(
        with_tensor(model_tensors(), raw_f32("steps.weight", &[4, 6, 6], &[0.0; 144])),
        &["steps.weight", "[4, 6, 6]", "expected [4, 5, 5]"],
    );
    check(
        with_tensor(model_tensors(), raw_f32("steps.weight", &[20, 5], &[0.0; 100])),
        &["steps.weight", "[20, 5]", "[N, width, width]"],
    );
    check(
        with_tensor(model_tensors(), raw_f32("opening.weight", &[15], &[0.0; 15])),
        &["opening.weight", "[15]", "[width, d]"],
    );
    let f64s = Raw { name: "opening.bias".into(), dtype: Dtype::F64, shape: vec![5], bytes: vec![0; 40] };
    check(with_tensor(model_tensors(), f64s), &["opening.bias", "F64", "only F32"]);
    let mut nan = [0.5f32; 2];
    nan[1] = f32::NAN;
    check(
        with_tensor(model_tensors(), raw_f32("classifier.bias", &[2], &nan)),
        &["classifier.bias", "non-finite", "index 1"],
    );
    check(
        with_tensor(model_tensors(), raw_f32("steps.bias", &[4, 5], &[f32::INFINITY; 20])),
        &["steps.bias", "non-finite"],
    );
    // A single class is not a classifier: the configuration check runs on loaded files.
    let one = with_tensor(model_tensors(), raw_f32("classifier.weight", &[1, 5], &[0.0; 5]));
    check(with_tensor(one, raw_f32("classifier.bias", &[1], &[0.0])), &["2 classes"]);
}

#[test]
fn io_model_with_bad_metadata_is_rejected_naming_the_key() {
    let dir = TempDir::new("badmeta");
    let path = dir.path("bad.safetensors");
    let check = |edit: (&str, Option<&str>), needles: &[&str]| {
        let mut meta = model_meta();
        meta.retain(|(k, _)| *k != edit.0);
        if let Some(v) = edit.1 {
            meta.push((edit.0, v));
        }
        write_raw(&path, &model_tensors(), Some(&meta));
        assert_err(load_model(&path), &path, needles);
    };
    check(("integrator", Some("euler")), &["integrator", "\"euler\""]);
    check(("activation", Some("sigmoid")), &["activation", "\"sigmoid\""]);
    check(("final_time", Some("abc")), &["final_time", "\"abc\"", "not a decimal"]);
    check(("final_time", Some("0")), &["final_time", "> 0"]);
    check(("final_time", Some("-1.5")), &["final_time", "> 0"]);
    check(("final_time", Some("inf")), &["final_time", "finite"]);
    check(("gamma", Some("-0.1")), &["gamma", "\"-0.1\"", ">= 0"]);
    check(("gamma", Some("NaN")), &["gamma", "finite"]);
    check(("gamma", Some("x")), &["gamma", "not a decimal"]);
    for key in ["integrator", "final_time", "activation"] {
        check((key, None), &[key, "missing"]);
    }
    write_raw(&path, &model_tensors(), None);
    assert_err(load_model(&path), &path, &["integrator", "missing"]);
}

#[test]
fn io_truncated_and_garbage_files_fail_clearly() {
    let dir = TempDir::new("truncated");
    let good = dir.path("good.safetensors");
    let cfg = config(Integrator::Resnet, Activation::Tanh);
    save_model(&good, &cfg, &params(&cfg, 1), &[], &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path("cut.safetensors");
    for len in [0, 5, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert_err(load_model(&cut), &cut, &["not a readable safetensors file"]);
        assert_err(load_tensors(&cut), &cut, &["not a readable safetensors file"]);
        assert_err(load_data(&cut, None), &cut, &["not a readable safetensors file"]);
    }
    // Trailing bytes are as wrong as missing ones.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 4]);
    std::fs::write(&cut, &long).unwrap();
    assert_err(load_model(&cut), &cut, &["file size"]);

    let garbage = dir.path("garbage.bin");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for size in [7usize, 64, 4096] {
        let noise: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&garbage, &noise).unwrap();
        assert_err(load_model(&garbage), &garbage, &["not a readable safetensors file"]);
    }
    // A small header length followed by non-JSON.
    let mut fake = 8u64.to_le_bytes().to_vec();
    fake.extend_from_slice(b"not json");
    std::fs::write(&garbage, &fake).unwrap();
    assert_err(load_model(&garbage), &garbage, &["not valid safetensors JSON"]);

    let absent = dir.path("absent.safetensors");
    assert!(matches!(load_model(&absent), Err(Error::Io { .. })));
    assert_err(load_model(&absent), &absent, &[]);
}

#[test]
fn io_save_model_rejects_inconsistent_input() {
    let dir = TempDir::new("badsave");
    let path = dir.path("m.safetensors");
    let cfg = config(Integrator::Resnet, Activation::Tanh);
    let p = params(&cfg, 2);
    let none = BTreeMap::new();
    let clash = [Tensor::new("steps.bias", vec![4, 5], vec![0.0; 20])];
    assert_err(save_model(&path, &cfg, &p, &clash, &none), &path, &["steps.bias", "collides"]);
    let reserved: BTreeMap<String, String> = [("gamma".into(), "1".into())].into();
    assert_err(save_model(&path, &cfg, &p, &[], &reserved), &path, &["gamma", "reserved"]);
    let mut nan = p.clone();
    nan.wc[3] = f32::NAN;
    assert_err(save_model(&path, &cfg, &nan, &[], &none), &path, &["classifier.weight", "NaN"]);
    let other = ModelConfig { width: 6, ..cfg.clone() };
    assert_err(save_model(&path, &other, &p, &[], &none), &path, &["(d, w, N, C)"]);
    let twice = [Tensor::new("optim.a", vec![1], vec![0.0]), Tensor::new("optim.a", vec![1], vec![1.0])];
    assert_err(save_model(&path, &cfg, &p, &twice, &none), &path, &["optim.a", "twice"]);
    assert!(!path.exists(), "a refused save must not create the file");
}

#[test]
fn io_gradient_tensors_round_trip_and_reject_other_dtypes() {
    let dir = TempDir::new("tensors");
    let path = dir.path("grad.safetensors");
    let cfg = config(Integrator::Leapfrog, Activation::Tanh);
    let g = params(&cfg, 5);
    let mut tensors: Vec<Tensor> =
        g.groups().into_iter().map(|(name, v)| Tensor::new(name, g.group_shape(name), v.to_vec())).collect();
    tensors.push(Tensor::new("loss", vec![], vec![0.612_345_7]));
    let meta: BTreeMap<String, String> = [("seed".into(), "5".into())].into();
    save_tensors(&path, &tensors, &meta).unwrap();
    let (back, back_meta) = load_tensors(&path).unwrap();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back.len(), tensors.len());
    for (a, b) in back.iter().zip(&tensors) {
        assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
        assert_eq!(bits(&a.data), bits(&b.data), "{}", a.name);
    }
    assert_eq!(back_meta, meta);
    let st_bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(st.tensor("loss").unwrap().shape(), &[] as &[usize]);

    // A foreign writer need not pad the header: data at an odd offset still decodes.
    let n = u64::from_le_bytes(st_bytes[..8].try_into().unwrap()) as usize;
    let mut odd = (n as u64 + 1).to_le_bytes().to_vec();
    odd.extend_from_slice(&st_bytes[8..8 + n]);
    odd.push(b' ');
    odd.extend_from_slice(&st_bytes[8 + n..]);
    let odd_path = dir.path("odd.safetensors");
    std::fs::write(&odd_path, &odd).unwrap();
    let (odd_back, _) = load_tensors(&odd_path).unwrap();
    assert_eq!(odd_back, back);

    let short = [Tensor::new("loss", vec![2], vec![1.0])];
    assert_err(save_tensors(&path, &short, &meta), &path, &["loss", "[2]", "1 values"]);
    let other = dir.path("i32.safetensors");
    let ts =
        [raw_f32("a", &[1], &[1.0]), Raw { name: "b".into(), dtype: Dtype::I32, shape: vec![1], bytes: vec![0; 4] }];
    write_raw(&other, &ts, None);
    assert_err(load_tensors(&other), &other, &["tensor b", "I32", "only F32"]);
}

#[test]
fn io_write_atomic_replaces_and_leaves_no_temporary() {
    let dir = TempDir::new("atomic");
    let path = dir.path("f.bin");
    write_atomic(&path, b"old").unwrap();
    write_atomic(&path, b"new contents").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
    let entries: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(entries.len(), 1, "a temporary file was left behind");
}

#[test]
fn io_write_atomic_failures_name_the_path_and_keep_the_target() {
    let dir = TempDir::new("atomicfail");
    // The target's directory does not exist.
    let nodir = dir.path("missing/f.bin");
    assert_err(write_atomic(&nodir, b"x"), &nodir, &["temporary file"]);
    // The "directory" is a regular file.
    let file = dir.path("plain");
    std::fs::write(&file, b"keep").unwrap();
    let under = file.join("f.bin");
    assert_err(write_atomic(&under, b"x"), &under, &[]);
    // The target is a non-empty directory: refused by name, nothing written beside it and
    // the folder untouched.
    let target = dir.path("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"keep").unwrap();
    assert_err(write_atomic(&target, b"x"), &target, &["is a folder"]);
    assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"keep");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["plain", "taken"]);
}

/// A symbolic link is followed (the file it names is replaced, the link stays, a dangling
/// one's target is created), and a node that is not a regular file is written to, not
/// replaced: a rename over /dev/null once turned it into a plain file.
#[cfg(unix)]
#[test]
fn io_write_atomic_follows_links_and_writes_into_devices() {
    use std::os::unix::fs::{FileTypeExt, symlink};
    let dir = TempDir::new("links");
    std::fs::create_dir(dir.path("sub")).unwrap();
    let real = dir.path("sub/real.csv");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path("link.csv");
    symlink("sub/real.csv", &link).unwrap();
    let chain = dir.path("chain.csv");
    symlink(&link, &chain).unwrap();
    write_atomic(&chain, b"new").unwrap();
    assert_eq!(std::fs::read(&real).unwrap(), b"new");
    for l in [&link, &chain] {
        assert!(std::fs::symlink_metadata(l).unwrap().file_type().is_symlink(), "{l:?} was replaced");
    }
    let dangling = dir.path("later.csv");
    symlink("sub/missing.csv", &dangling).unwrap();
    write_atomic(&dangling, b"made").unwrap();
    assert_eq!(std::fs::read(dir.path("sub/missing.csv")).unwrap(), b"made");
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<_> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir.path("sub")), ["missing.csv", "real.csv"], "no temporary file left");

    let null = Path::new("/dev/null");
    write_atomic(null, b"into the device").unwrap();
    assert!(std::fs::metadata(null).unwrap().file_type().is_char_device(), "/dev/null was replaced");
}

#[cfg(unix)]
#[test]
fn io_write_atomic_into_read_only_directory_keeps_the_existing_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("readonly");
    let ro = dir.path("ro");
    std::fs::create_dir(&ro).unwrap();
    let path = ro.join("model.safetensors");
    std::fs::write(&path, b"existing").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // root ignores directory permissions; then there is nothing to test here.
    let probe = ro.join("probe");
    let privileged = std::fs::write(&probe, b"").is_ok();
    if !privileged {
        let cfg = config(Integrator::Resnet, Activation::Tanh);
        let p = params(&cfg, 1);
        assert_err(save_model(&path, &cfg, &p, &[], &BTreeMap::new()), &path, &["temporary file"]);
        assert_err(write_atomic(&path, b"new"), &path, &["temporary file"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"existing");
    } else {
        // As root (CI): /proc/self takes no new files from anyone, so the temporary file
        // still cannot be made, and the error must say so.
        let _ = std::fs::remove_file(&probe);
        let proc_path = Path::new("/proc/self/model.safetensors");
        assert_err(write_atomic(proc_path, b"new"), proc_path, &["temporary file"]);
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn data_file(path: &Path, x: &[f32], shape: &[usize], labels: Raw) {
    let ts = [raw_f32("x", shape, x), labels];
    write_raw(path, &ts, None);
}

fn labels_raw(dtype: Dtype, values: &[i64]) -> Raw {
    let bytes = match dtype {
        Dtype::I64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::I32 => values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        Dtype::U8 => values.iter().map(|&v| v as u8).collect(),
        Dtype::F32 => values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
        _ => unreachable!(),
    };
    Raw { name: "labels".into(), dtype, shape: vec![values.len()], bytes }
}

#[test]
fn io_load_data_accepts_i64_i32_u8_labels() {
    let dir = TempDir::new("data");
    let path = dir.path("d.safetensors");
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.25 - 1.0).collect();
    for dtype in [Dtype::I64, Dtype::I32, Dtype::U8] {
        data_file(&path, &x, &[4, 2], labels_raw(dtype, &[0, 2, 1, 2]));
        let ds = load_data(&path, None).unwrap();
        assert_eq!(ds.labels, [0, 2, 1, 2], "{dtype}");
        assert_eq!((ds.d, ds.classes, ds.len()), (2, 3, 4));
        assert_eq!(bits(&ds.x), bits(&x));
        assert_eq!(load_data(&path, Some(5)).unwrap().classes, 5);
        assert_err(load_data(&path, Some(2)), &path, &["label 2 of sample 1", "0..2"]);
    }
}

#[test]
fn io_load_data_rejects_bad_files() {
    let dir = TempDir::new("baddata");
    let path = dir.path("d.safetensors");
    let x = [0.5f32; 6];
    let ok = || labels_raw(Dtype::I64, &[0, 1, 1]);
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::I64, &[0, -1, 1]));
    assert_err(load_data(&path, None), &path, &["label -1 of sample 1 is negative"]);
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::I32, &[0, 1, -4]));
    assert_err(load_data(&path, None), &path, &["label -4 of sample 2 is negative"]);
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::F32, &[0, 1, 1]));
    assert_err(load_data(&path, None), &path, &["labels", "F32", "I64, I32 and U8"]);
    // A stray huge label is named, not turned into a billion classes (the classifier once
    // asked for 16 GB); the largest label allowed still loads, and a file's own count rules.
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::I64, &[0, 1_000_000_000, 1_000_000_000]));
    assert_err(load_data(&path, None), &path, &["label 1000000000 of sample 1", "1000000001 classes", "0-based"]);
    let top = super::data::MAX_CLASSES as i64 - 1;
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::I64, &[0, top, 1]));
    assert_eq!(load_data(&path, None).unwrap().classes, super::data::MAX_CLASSES);
    data_file(&path, &x, &[3, 2], labels_raw(Dtype::I64, &[0, 1]));
    assert_err(load_data(&path, None), &path, &["labels", "[2]", "expected [3]"]);
    data_file(&path, &x, &[6], ok());
    assert_err(load_data(&path, None), &path, &["tensor x", "[6]", "[n, d]"]);
    data_file(&path, &x, &[3, 1, 2], ok());
    assert_err(load_data(&path, None), &path, &["tensor x", "[3, 1, 2]", "[n, d]"]);
    let mut nan = x;
    nan[5] = f32::NAN;
    data_file(&path, &nan, &[3, 2], ok());
    assert_err(load_data(&path, None), &path, &["sample 2", "non-finite", "feature 1"]);
    let f64x = Raw { name: "x".into(), dtype: Dtype::F64, shape: vec![3, 2], bytes: vec![0; 48] };
    write_raw(&path, &[f64x, ok()], None);
    assert_err(load_data(&path, None), &path, &["tensor x", "F64", "only F32"]);
    write_raw(&path, &[ok()], None);
    assert_err(load_data(&path, None), &path, &["tensor x", "missing"]);
    write_raw(&path, &[raw_f32("x", &[3, 2], &x)], None);
    assert_err(load_data(&path, None), &path, &["tensor labels", "missing"]);
}
