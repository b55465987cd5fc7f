//! The GPU network against the CPU reference on a real adapter (lavapipe in CI): loss and
//! every gradient tensor, for every integrator, at awkward sizes.
use stablenet_core::data::Dataset;
use stablenet_core::{Activation, GradMethod, Integrator, ModelConfig, Params, Rng, loss_grad};
use stablenet_gpu::{DeviceRequest, Gpu, GpuNet};

fn gpu() -> Gpu {
    let g = Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
    eprintln!("adapter: {}", g.describe());
    g
}

fn case(integrator: Integrator, act: Activation, d: usize, w: usize, n: usize, c: usize, batch: usize) -> f64 {
    let cfg = ModelConfig {
        d,
        width: w,
        steps: n,
        final_time: 1.3,
        integrator,
        activation: act,
        gamma: if integrator == Integrator::Antisym { 0.05 } else { 0.0 },
        classes: c,
    };
    let mut rng = Rng::new(11 + w as u64);
    let mut p = Params::<f32>::init(&cfg, 5);
    for b in p.b.iter_mut().chain(p.b_in.iter_mut()).chain(p.mu.iter_mut()) {
        *b = (0.3 * rng.normal()) as f32;
    }
    let x: Vec<f32> = (0..batch * d).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.below(c) as u32).collect();
    let data = Dataset { x: x.clone(), labels: labels.clone(), d, classes: c };
    let net = GpuNet::new(gpu(), &cfg, batch, batch, None).unwrap();
    net.set_params(&p).unwrap();
    net.set_data(&data).unwrap();
    let (loss, g) = net.loss_grad(0, batch).unwrap();
    let cpu = loss_grad(&cfg, &p.cast::<f64>(), &x, &labels, GradMethod::Stored).unwrap();
    let mut worst = ((loss as f64 - cpu.loss) / cpu.loss).abs();
    for ((name, a), (_, b)) in g.groups().iter().zip(cpu.grad.groups()) {
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
        let err = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((*x as f64 - y).abs())) / scale;
        assert!(err < 1e-4, "{integrator} {act} w={w} N={n} n={batch}: {name} relative error {err:.2e}");
        worst = worst.max(err);
    }
    println!("{integrator:<12} {act} d={d} w={w} N={n} C={c} n={batch}: worst relative error {worst:.2e}");
    worst
}

#[test]
fn gradients_match_cpu_for_every_integrator() {
    for integrator in Integrator::ALL {
        case(integrator, Activation::Tanh, 3, 5, 4, 3, 70);
        case(integrator, Activation::Relu, 2, 4, 3, 2, 65);
        case(integrator, Activation::Tanh, 1, 1, 1, 2, 1);
    }
}

#[test]
fn deep_and_multi_chunk_batches() {
    for integrator in [Integrator::Hamiltonian, Integrator::Leapfrog, Integrator::Antisym] {
        case(integrator, Activation::Tanh, 2, 8, 40, 5, 600);
    }
}
