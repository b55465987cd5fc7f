//! `cargo xtask validate`'s kernel checks at CI sizes on the adapter that is there (lavapipe in
//! CI): every kernel against its CPU twin, and 20 training steps against the CPU trainer.
use stablenet_gpu::DeviceRequest;
use stablenet_gpu::validate::{run, table};

#[test]
fn every_kernel_matches_its_cpu_twin() {
    let mut emitted = 0;
    let rows = run(&DeviceRequest::default().with_env(), true, &mut |r| emitted += r.len())
        .expect("a GPU adapter (lavapipe in CI)");
    assert_eq!(emitted, rows.len(), "every row is emitted as its case ends");
    println!("{}", table(&rows));
    assert!(rows.len() > 80, "every case produced its rows");
    // Every case also ran the tiled steps (tiles.wgsl).
    let tiled = rows.iter().filter(|r| r.kernels.starts_with("tile_adjoint, reduce_tiles")).count();
    assert!(tiled >= 26, "{tiled} cases ran the tiled steps");
    // And the 8 x 8 Verlet adjoint (verlet_tiled8.wgsl): w = 8 tuned, w = 128 at n = 70, 7900.
    let eights = rows.iter().filter(|r| r.kernels.starts_with("tile_adjoint8") && r.kernels.contains("dK_j")).count();
    assert!(eights >= 3, "{eights} cases ran tile_adjoint8");
    // And Verlet with its pre-activations kept: in 4 x 4 blocks in all 9 quick Verlet cases, and
    // in 8 x 8 where the tiles take them; each run also checks what the forward kept.
    let tagged =
        |tag: &str, what: &str| rows.iter().filter(|r| r.kernels.contains(tag) && r.kernels.contains(what)).count();
    let (grads, kept) = (tagged("(keep)", "dK_j"), tagged("(keep)", "kept pre-activations"));
    assert!(grads >= 9 && kept == grads, "{grads} cases kept the pre-activations, {kept} checked them");
    let kept8 = tagged("(8x8, keep)", "dK_j");
    assert!(kept8 >= 4, "{kept8} cases kept them in 8 x 8 blocks");
    // The GPU trainer keeps them for the stored method, and trains as the CPU does then.
    let trained = rows.iter().filter(|r| r.case.ends_with("20 steps (pre-activations kept)")).count();
    assert!(trained >= 5, "{trained} training rows kept the pre-activations");
    let failed: Vec<_> = rows.iter().filter(|r| !r.ok()).collect();
    assert!(failed.is_empty(), "beyond tolerance: {failed:#?}");
}
