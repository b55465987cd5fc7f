//! lavapipe (the CI adapter) silently stops an invocation's loops after 65535 iterations, all
//! its loops and their exit tests counted together: what the engine refuses there, on the
//! adapter that is there.
use stablenet_core::compare::rel_error;
use stablenet_core::data::Dataset;
use stablenet_core::network::GradMethod;
use stablenet_core::{Activation, Integrator, ModelConfig, Params, loss_grad};
use stablenet_gpu::{DeviceRequest, Gpu, GpuNet};

/// The opening at w = 128, d = 600 ran ~78k loop iterations per example, the classifier at
/// C = 300 ~78k: on lavapipe they returned a wrong y_0 (so a wrong loss and gradients) and a
/// wrong ybar (wrong step and opening gradients) without a word. Since both take eight outputs
/// per pass those two run ~10k, and must now be right on lavapipe too; d = 4000 and C = 2000
/// (~68k) are past the limit still. A software adapter refuses those, naming the layer; a
/// hardware one computes every case as the CPU does.
#[test]
fn wide_openings_and_classifiers_are_refused_or_right() {
    let gpu = || Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
    let software = gpu().is_software();
    let cases = [(600, 2, None), (2, 300, None), (4000, 2, Some("opening layer")), (2, 2000, Some("classifier"))];
    for (d, c, refused) in cases {
        let cfg = ModelConfig {
            d,
            width: 128,
            steps: 1,
            final_time: 1.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: c,
        };
        let n = 3;
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % c as u32).collect();
        let net = GpuNet::new(gpu(), &cfg, n, n, None);
        if let (true, Some(layer)) = (software, refused) {
            let err = net.err().expect("refused on a software adapter").to_string();
            assert!(err.contains(layer) && err.contains("software adapter"), "{err}");
            continue;
        }
        let mut net = net.unwrap();
        let p = Params::<f32>::init(&cfg, 3);
        net.set_params(&p).unwrap();
        net.set_data(&Dataset { x: x.clone(), labels: labels.clone(), d, classes: c }).unwrap();
        let (loss, g) = net.loss_grad(0, n).unwrap();
        let cpu = loss_grad(&cfg, &p.cast::<f64>(), &x, &labels, GradMethod::Stored).unwrap();
        // NaN-aware: a non-finite entry or a length mismatch is an infinite error.
        let rel = rel_error::<f32, f64>;
        assert!((f64::from(loss) - cpu.loss).abs() < 1e-4 * cpu.loss.abs().max(1.0), "d {d}, C {c}: loss");
        // Every gradient group, each against its own scale (a small bias hides behind no weight).
        for ((name, ours), (_, theirs)) in g.groups().into_iter().zip(cpu.grad.groups()) {
            assert!(rel(ours, theirs) < 1e-4, "d {d}, C {c}: {name}");
        }
    }
}
