//! The image stage kernels (conv.wgsl, conv_steps.wgsl) against their CPU twin on the adapter
//! that is there (lavapipe in CI): every integrator, forward, adjoint, dK_j, db_j, the
//! reverse-time rebuild and bit-identical reruns (the `cargo xtask validate --quick` cases).
use stablenet_gpu::DeviceRequest;
use stablenet_gpu::image::validate::{cases, run};
use stablenet_gpu::validate::table;

#[test]
fn image_stage_kernels_match_their_cpu_twin() {
    let rows = run(&DeviceRequest::default().with_env(), true).expect("a GPU adapter (lavapipe in CI)");
    println!("{}", table(&rows));
    assert!(rows.len() >= 5 * cases(true).len(), "every case produced its rows");
    let failed: Vec<_> = rows.iter().filter(|r| !r.ok()).collect();
    assert!(failed.is_empty(), "beyond tolerance: {failed:#?}");
}
