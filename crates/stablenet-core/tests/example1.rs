//! The paper's Example 1 (MODEL.md section 7): resnet, N = 10, h = 0.1, tanh, b = 0, three
//! points. K+ (eigenvalue 2) pushes them apart, K- (eigenvalue -2) collapses them to 0, and the
//! rotation K0 (eigenvalues +-i) keeps their distances.
use stablenet_core::Activation;
use stablenet_core::integrators::{Scratch, Step, resnet};

fn flow(k: [f64; 4]) -> [[f64; 2]; 3] {
    let mut pts = [[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]];
    let b = [0.0; 2];
    let st = Step::new(&k, &b, 0.1, Activation::Tanh);
    let mut sc = Scratch::new(2);
    for p in pts.iter_mut() {
        for _ in 0..10 {
            resnet::forward_step(&st, p, &mut sc);
        }
    }
    pts
}

fn distances(p: &[[f64; 2]; 3]) -> [f64; 3] {
    let d = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    [d(p[0], p[1]), d(p[0], p[2]), d(p[1], p[2])]
}

#[test]
fn example_1_diverges_collapses_and_rotates() {
    let before = distances(&[[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]]);
    let ratio = |k| {
        let after = distances(&flow(k));
        [after[0] / before[0], after[1] / before[1], after[2] / before[2]]
    };
    let plus = ratio([2.0, -2.0, 0.0, 2.0]);
    let minus = ratio([-2.0, 0.0, 2.0, -2.0]);
    let zero = ratio([0.0, -1.0, 1.0, 0.0]);
    println!("distance ratios after T = 1: K+ {plus:.3?}  K- {minus:.3?}  K0 {zero:.3?}");
    assert!(plus.iter().all(|r| *r > 2.5), "K+ must push the points apart: {plus:?}");
    assert!(minus.iter().all(|r| *r < 0.3), "K- must collapse the points: {minus:?}");
    assert!(zero.iter().all(|r| (0.9..1.1).contains(r)), "K0 must keep distances: {zero:?}");
    // Collapse to 0, not just together.
    let m = flow([-2.0, 0.0, 2.0, -2.0]);
    assert!(m.iter().all(|p| p[0].hypot(p[1]) < 0.1));
}
