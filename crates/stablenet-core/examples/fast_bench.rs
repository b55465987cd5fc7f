//! Time per training step (forward, full gradient, SGD update) of the reference and the fast
//! path on the BENCH.md workloads with the CPU batch sizes (hamiltonian, T = 5, tanh,
//! x ~ N(0,1), K_j ~ N(0, 1/w), b_j = 0, SGD lr 0.1). Median of the timed steps after one
//! warm-up step, minimum over repeats (the machine may be shared).
//!
//! cargo run --release -p stablenet-core --example fast_bench -- [--only NAME] [--steps 7]
//!     [--repeats 3] [--threads 1,2] [--ref] [--blocks G] [--kernels auto|avx2|portable]
use stablenet_core::fast::{FastWorkspace, Kernels, Layout, loss_grad_with};
use stablenet_core::{Activation, GradMethod, Integrator, ModelConfig, Params, Rng};
use std::time::Instant;

const WORKLOADS: [(&str, usize, usize, usize, usize, usize); 5] = [
    // name, d, w, N, n (cpu), C
    ("peaks-small", 2, 8, 64, 4096, 5),
    ("mid", 2, 32, 128, 4096, 5),
    ("wide", 64, 128, 32, 2048, 10),
    ("deep-256", 2, 8, 256, 1024, 5),
    ("deep-1024", 2, 8, 1024, 1024, 5),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Minimum over repeats of the median over steps of `step()`'s time.
fn time(steps: usize, repeats: usize, mut step: impl FnMut() -> f32) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        step(); // warm-up
        let times = (0..steps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(step());
                t.elapsed().as_secs_f64()
            })
            .collect();
        best = best.min(median(times));
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let flag = |name: &str| args.iter().any(|a| a == name);
    let steps: usize = opt("--steps").map_or(7, |s| s.parse().unwrap());
    let repeats: usize = opt("--repeats").map_or(3, |s| s.parse().unwrap());
    let threads: Vec<usize> =
        opt("--threads").map_or(vec![1, 2], |s| s.split(',').map(|t| t.parse().unwrap()).collect());
    for &(name, d, w, n_steps, n, c) in &WORKLOADS {
        if opt("--only").is_some_and(|o| !o.split(',').any(|o| o == name)) {
            continue;
        }
        let cfg = ModelConfig {
            d,
            width: w,
            steps: n_steps,
            final_time: 5.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: c,
        };
        let mut rng = Rng::new(7);
        let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        let mut line = format!("{name:12} d={d:<3} w={w:<4} N={n_steps:<5} n={n:<5}");
        if flag("--ref") {
            let mut p = Params::<f32>::init(&cfg, 1);
            let t = time(steps.min(3), 1, || {
                let lg = stablenet_core::loss_grad(&cfg, &p, &x, &labels, GradMethod::Reverse).unwrap();
                p.axpy(-0.1, &lg.grad);
                lg.loss
            });
            line += &format!("  ref {:9.2} ms", t * 1e3);
        }
        let mut layout = Layout::default_for(&cfg);
        if let Some(g) = opt("--blocks") {
            layout = Layout::new(g.parse().unwrap());
        }
        let mut ws = FastWorkspace::with_layout(&cfg, layout).unwrap();
        ws.set_kernels(match opt("--kernels").as_deref() {
            None | Some("auto") => Kernels::Auto,
            Some("avx2") => Kernels::Avx2,
            Some("portable") => Kernels::Portable,
            Some(k) => panic!("unknown kernels {k}"),
        });
        for &th in &threads {
            let mut p = Params::<f32>::init(&cfg, 1);
            let t = time(steps, repeats, || {
                let lg = loss_grad_with(&mut ws, &cfg, &p, &x, &labels, th).unwrap();
                p.axpy(-0.1, &lg.grad);
                lg.loss
            });
            line += &format!("  fast/{th}t {:8.2} ms", t * 1e3);
        }
        line += &format!("  (tile {} ex)", layout.tile());
        println!("{line}");
    }
}
