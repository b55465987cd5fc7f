use super::conv::*;
use super::*;
use crate::config::{Activation, Integrator};
use crate::real::dot;

fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n).map(|_| std * rng.normal()).collect()
}

fn small(integrator: Integrator, activation: Activation) -> ImageConfig {
    ImageConfig {
        integrator,
        activation,
        input: Shape::new(2, 6, 4),
        channels: vec![2, 3],
        steps: 3,
        final_time: 1.0,
        gamma: if integrator == Integrator::Antisym { 0.1 } else { 0.0 },
        classes: 3,
    }
}

#[test]
fn conv3x3_t_is_the_adjoint_and_wgrad_the_kernel_gradient() {
    let mut rng = Rng::new(3);
    for (ci, co, h, w) in [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 1, 6), (4, 4, 7, 7)] {
        let (si, so) = (Shape::new(ci, h, w), Shape::new(co, h, w));
        let k = randn(&mut rng, co * ci * 9, 1.0);
        let (x, g) = (randn(&mut rng, si.len(), 1.0), randn(&mut rng, so.len(), 1.0));
        let (mut xp, mut gp) = (vec![0.0; si.padded_len()], vec![0.0; so.padded_len()]);
        pad(si, &x, &mut xp);
        pad(so, &g, &mut gp);
        let (mut kx, mut ktg) = (vec![0.0; so.len()], vec![0.0; si.len()]);
        conv3x3(&k, si, co, &xp, &mut kx);
        conv3x3_t(&k, si, co, &gp, &mut ktg);
        let (a, b) = (dot(&g, &kx), dot(&ktg, &x));
        assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "<g, Kx> = {a}, <K^T g, x> = {b}");
        // <g, K x> is linear in K, so it equals <dK, K> with dK its gradient.
        let mut dk = vec![0.0; k.len()];
        conv3x3_wgrad(&g, si, co, &xp, &mut dk);
        let c = dot(&dk, &k);
        assert!((a - c).abs() <= 1e-12 * a.abs().max(1.0), "<g, Kx> = {a}, <dK, K> = {c}");
    }
}

#[test]
fn conv3x3_matches_a_direct_sum() {
    // One output pixel by the definition: K[o][c][di][dj] x[c][i+di-1][j+dj-1], zero outside.
    let mut rng = Rng::new(4);
    let s = Shape::new(2, 4, 5);
    let k = randn(&mut rng, 3 * 2 * 9, 1.0);
    let x = randn(&mut rng, s.len(), 1.0);
    let mut xp = vec![0.0; s.padded_len()];
    pad(s, &x, &mut xp);
    let mut out = vec![0.0; 3 * s.pixels()];
    conv3x3(&k, s, 3, &xp, &mut out);
    for (o, i, j) in [(0, 0, 0), (2, 3, 4), (1, 2, 1), (0, 3, 0)] {
        let mut want = 0.0;
        for c in 0..2 {
            for di in 0..3 {
                for dj in 0..3 {
                    let (ii, jj) = (i as isize + di as isize - 1, j as isize + dj as isize - 1);
                    if (0..4).contains(&ii) && (0..5).contains(&jj) {
                        want += k[(o * 2 + c) * 9 + di * 3 + dj] * x[(c * 4 + ii as usize) * 5 + jj as usize];
                    }
                }
            }
        }
        assert!((out[(o * 4 + i) * 5 + j] - want).abs() < 1e-12);
    }
}

#[test]
fn pooling_and_1x1_adjoints() {
    let mut rng = Rng::new(5);
    let s = Shape::new(3, 4, 6);
    let x = randn(&mut rng, s.len(), 1.0);
    let g = randn(&mut rng, s.len() / 4, 1.0);
    let (mut px, mut tg) = (vec![0.0; s.len() / 4], vec![0.0; s.len()]);
    avgpool2(s, &x, &mut px);
    avgpool2_t(s, &g, &mut tg);
    assert!((dot(&g, &px) - dot(&tg, &x)).abs() < 1e-12);
    let (ci, co, pix) = (3, 5, 7);
    let w = randn(&mut rng, co * ci, 1.0);
    let (x, g) = (randn(&mut rng, ci * pix, 1.0), randn(&mut rng, co * pix, 1.0));
    let (mut wx, mut wtg, mut dw) = (vec![0.0; co * pix], vec![0.0; ci * pix], vec![0.0; co * ci]);
    conv1x1(&w, ci, co, pix, &x, &mut wx);
    conv1x1_t(&w, ci, co, pix, &g, &mut wtg);
    conv1x1_wgrad(&g, ci, co, pix, &x, &mut dw);
    let a = dot(&g, &wx);
    assert!((a - dot(&wtg, &x)).abs() < 1e-12 && (a - dot(&dw, &w)).abs() < 1e-12);
}

fn random_params(cfg: &ImageConfig, seed: u64) -> ImageParams<f64> {
    let mut p = ImageParams::<f64>::init(cfg, seed);
    let mut rng = Rng::new(seed + 100);
    for v in &mut p.data {
        *v += 0.3 * rng.normal();
    }
    p
}

/// Taylor test: with J(p + e dp) = J + e <g, dp> + O(e^2), the first-order remainder falls by
/// about 4 when e halves, in every parameter tensor.
#[test]
fn taylor_test_every_integrator_and_tensor() {
    let cases = [
        (Integrator::Resnet, Activation::Tanh),
        (Integrator::Antisym, Activation::Tanh),
        (Integrator::Hamiltonian, Activation::Tanh),
        (Integrator::Leapfrog, Activation::Tanh),
        (Integrator::Hamiltonian, Activation::Relu),
        (Integrator::Leapfrog, Activation::Relu),
    ];
    for (integrator, act) in cases {
        let cfg = small(integrator, act);
        let net = ImageNet::new(&cfg).unwrap();
        let p = random_params(&cfg, 11);
        let mut rng = Rng::new(12);
        let n = 5;
        let x: Vec<f64> = (0..n * cfg.input.len()).map(|_| rng.uniform()).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let lg = net.loss_grad(&p, &x, &labels, 2).unwrap();
        let j = |q: &ImageParams<f64>| net.loss_grad(q, &x, &labels, 1).unwrap().loss;
        for slot in &p.slots {
            let mut dp = p.zeros_like();
            for v in &mut dp.data[slot.offset..slot.offset + slot.len] {
                *v = rng.normal();
            }
            let slope = dot(&lg.grad.data, &dp.data);
            let rem = |e: f64| {
                let mut q = p.clone();
                for (a, b) in q.data.iter_mut().zip(&dp.data) {
                    *a += e * b;
                }
                (j(&q) - lg.loss - e * slope).abs()
            };
            // relu: small steps, so that few pre-activations cross the kink at 0.
            // Four step sizes, three ratios: each must be about 4. A remainder at round-off
            // (1e-16 of a loss about 1) would give any ratio, so none may be near it.
            // A tensor of little curvature (relu's opening bias) starts from a larger step.
            let mut e = if act == Activation::Relu { 4e-5 } else { 1e-3 };
            while rem(e) < 1e-11 && e < 1e-2 {
                e *= 2.0;
            }
            let r: Vec<f64> = (0..4).map(|k| rem(e / f64::from(1 << k))).collect();
            let ratios: Vec<f64> = r.windows(2).map(|w| w[0] / w[1]).collect();
            assert!(
                r[3] > 1e-13 && ratios.iter().all(|q| (3.5..4.5).contains(q)),
                "{integrator}/{act} {}: remainders {r:?}, ratios {ratios:?}",
                slot.name
            );
        }
    }
}

#[test]
fn gradient_bits_do_not_depend_on_the_thread_count() {
    let cfg = small(Integrator::Hamiltonian, Activation::Tanh);
    let net = ImageNet::new(&cfg).unwrap();
    let p: ImageParams<f32> = random_params(&cfg, 2).cast();
    let mut rng = Rng::new(1);
    let n = 37;
    let x: Vec<f32> = (0..n * cfg.input.len()).map(|_| rng.uniform() as f32).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let a = net.loss_grad(&p, &x, &labels, 1).unwrap();
    for t in [2, 3, 8] {
        let b = net.loss_grad(&p, &x, &labels, t).unwrap();
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert!(a.grad.data.iter().zip(&b.grad.data).all(|(u, v)| u.to_bits() == v.to_bits()));
    }
}

#[test]
fn bad_configurations_and_batches_are_named() {
    let mut cfg = small(Integrator::Leapfrog, Activation::Tanh);
    cfg.channels = vec![2, 2, 2];
    let err = ImageNet::new(&cfg).unwrap_err().to_string();
    assert!(err.contains("divisible by 4"), "{err}");
    let cfg = small(Integrator::Leapfrog, Activation::Tanh);
    let net = ImageNet::new(&cfg).unwrap();
    let p = ImageParams::<f64>::init(&cfg, 1);
    let err = net.loss_grad(&p, &[0.0; 10], &[0], 1).err().unwrap().to_string();
    assert!(err.contains("2 x 6 x 4"), "{err}");
    let err = net.loss_grad(&p, &vec![0.0; 48], &[7], 1).err().unwrap().to_string();
    assert!(err.contains("label 7"), "{err}");
}

#[test]
fn prolongation_doubles_the_steps_and_keeps_the_rest() {
    let cfg = small(Integrator::Hamiltonian, Activation::Tanh);
    let p = random_params(&cfg, 4);
    let (fine, q) = p.prolongate(&cfg);
    assert_eq!(fine.steps, 6);
    q.check_shape(&fine).unwrap();
    assert_eq!(p.get("widen.0.weight"), q.get("widen.0.weight"));
    let (k, kf) = (p.get("stages.1.weight"), q.get("stages.1.weight"));
    let len = 3 * 3 * 9;
    assert_eq!(&k[len..2 * len], &kf[2 * len..3 * len]);
}

/// The loss, logits and every gradient against PyTorch autograd in float64 (fixtures made by
/// `benches/pytorch/make_image_fixtures.py` from an independent conv2d/conv_transpose2d twin).
#[test]
fn matches_pytorch_autograd_fixtures() {
    use safetensors::SafeTensors;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/torch/image");
    let mut seen = 0;
    for name in ["resnet", "antisym", "hamiltonian", "leapfrog", "hamiltonian_relu", "leapfrog_relu"] {
        let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).expect("fixture exists");
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().expect("fixture metadata");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let f64s = |k: &str| -> Vec<f64> {
            let t = st.tensor(k).unwrap_or_else(|_| panic!("{name}: no {k}"));
            t.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
        };
        let m = |k: &str| meta[k].clone();
        let cfg = ImageConfig {
            integrator: m("integrator").parse().unwrap(),
            activation: m("activation").parse().unwrap(),
            input: Shape::new(
                m("in_channels").parse().unwrap(),
                m("height").parse().unwrap(),
                m("width").parse().unwrap(),
            ),
            channels: m("channels").split(',').map(|c| c.parse().unwrap()).collect(),
            steps: m("steps").parse().unwrap(),
            final_time: m("final_time").parse().unwrap(),
            gamma: m("gamma").parse().unwrap(),
            classes: m("classes").parse().unwrap(),
        };
        let net = ImageNet::new(&cfg).unwrap();
        let mut p = ImageParams::<f64>::zeros(&cfg);
        for slot in p.slots.clone() {
            p.get_mut(&slot.name).copy_from_slice(&f64s(&slot.name));
        }
        let x = f64s("x");
        let labels: Vec<u32> = st
            .tensor("labels")
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect();
        let lg = net.loss_grad(&p, &x, &labels, 2).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * b.abs().max(1e-3);
        assert!(close(lg.loss, f64s("loss")[0]), "{name}: loss {} vs {}", lg.loss, f64s("loss")[0]);
        let logits = net.logits(&p, &x, 1).unwrap();
        assert!(logits.iter().zip(f64s("logits")).all(|(&a, b)| close(a, b)), "{name}: logits differ");
        for slot in &p.slots {
            let want = f64s(&format!("grad.{}", slot.name));
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let got = lg.grad.get(&slot.name);
            let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-10 * scale.max(1e-8), "{name} {}: max error {err:e} (scale {scale:e})", slot.name);
            seen += 1;
        }
    }
    assert_eq!(seen, 6 * 10);
}

/// Hand-built parameters whose flat vector or table does not match their shapes are refused
/// (they were read through the table unchecked: a panic on the CPU, part of them trained on
/// the GPU).
#[test]
fn parameters_must_tile_their_table() {
    let cfg = ImageConfig {
        integrator: Integrator::Hamiltonian,
        activation: Activation::Relu,
        input: Shape::new(1, 8, 8),
        channels: vec![4],
        steps: 2,
        final_time: 1.0,
        gamma: 0.0,
        classes: 3,
    };
    let good = ImageParams::<f32>::zeros(&cfg);
    assert!(good.check_shape(&cfg).is_ok());
    let short = ImageParams { slots: good.slots.clone(), data: vec![0.0; good.data.len() - 1] };
    assert!(short.check_shape(&cfg).unwrap_err().to_string().contains("parameter values"));
    let mut moved = good.clone();
    moved.slots[1].offset += 1;
    assert!(moved.check_shape(&cfg).unwrap_err().to_string().contains("lies at"));
}
