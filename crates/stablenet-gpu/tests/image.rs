//! The image kernels against their CPU twins on the adapter that is there (lavapipe in CI):
//! stages (conv.wgsl, conv_steps.wgsl: every integrator, forward, adjoint, dK_j, db_j, the
//! reverse-time rebuild, bit-identical reruns) and whole networks (image_net.wgsl: loss, hits
//! and every gradient against ImageNet::loss_grad); the `cargo xtask validate --quick` cases.
use stablenet_gpu::DeviceRequest;
use stablenet_gpu::image::validate::{cases, net_cases, run};
use stablenet_gpu::validate::table;

#[test]
fn image_stage_kernels_match_their_cpu_twin() {
    let rows = run(&DeviceRequest::default().with_env(), true).expect("a GPU adapter (lavapipe in CI)");
    println!("{}", table(&rows));
    let nets = rows.iter().filter(|r| r.case.starts_with("net ")).count();
    assert!(rows.len() - nets >= 5 * cases(true).len(), "every stage case produced its rows");
    assert!(nets >= 7 * net_cases(true).len(), "every network case produced its rows");
    let failed: Vec<_> = rows.iter().filter(|r| !r.ok()).collect();
    assert!(failed.is_empty(), "beyond tolerance: {failed:#?}");
}

/// A batch that cannot fit is refused at construction with the limit it exceeds, and an
/// adjoint pass needs the forward pass of the same batch first.
#[test]
fn image_stage_refuses_what_it_cannot_run() {
    use stablenet_core::image::Shape;
    use stablenet_core::{Activation, Integrator};
    use stablenet_gpu::{Gpu, ImageStage, StageSpec};
    let gpu = Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
    let spec = |integrator, steps| StageSpec {
        integrator,
        act: Activation::Tanh,
        shape: Shape::new(64, 28, 28),
        steps,
        h: 0.1,
        gamma: 0.0,
    };
    let err = ImageStage::new(&gpu, spec(Integrator::Resnet, 100), 1 << 20).err().expect("too big").to_string();
    println!("{err}");
    assert!(err.contains("storage binding limit") && err.contains("smaller batch"), "{err}");
    let small = spec(Integrator::Leapfrog, 2);
    let mut st = ImageStage::new(&gpu, small, 2).unwrap();
    st.set_params(&vec![0.0; small.k_len()], &vec![0.0; small.b_len()]).unwrap();
    let y = vec![0.5; 2 * small.shape.len()];
    assert!(st.adjoint(&y).is_err(), "adjoint before forward");
    assert!(st.forward(&vec![0.5; 3 * small.shape.len()]).is_err(), "batch above capacity");
    st.forward(&y).unwrap();
    assert!(st.adjoint(&y[..small.shape.len()]).is_err(), "adjoint of another batch size");
}

/// 683 channels give 4.2 million gradient outputs, more workgroups than one grid dimension
/// holds (65535): the reductions fold them into a 2-D grid (they once failed to dispatch).
#[test]
fn image_stage_reductions_beyond_one_grid_row() {
    use stablenet_core::image::Shape;
    use stablenet_core::{Activation, Integrator};
    use stablenet_gpu::Gpu;
    use stablenet_gpu::image::validate::{ImageCase, check_case};
    let gpu = Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
    let case = ImageCase {
        integrator: Integrator::Resnet,
        act: Activation::Tanh,
        n: 1,
        shape: Shape::new(683, 1, 1),
        steps: 1,
        grid: None,
        chunk_rows: None,
    };
    let rows = check_case(&gpu, case).unwrap();
    println!("{}", table(&rows));
    assert!(rows.iter().all(|r| r.ok()), "{rows:#?}");
}

/// A stage whose kernels K_j alone pass the adapter's binding limit is refused with the limit
/// and what helps (it once failed wgpu's validation when its bind group was made).
#[test]
fn image_stage_kernels_must_fit_one_binding() {
    use stablenet_core::image::Shape;
    use stablenet_core::{Activation, Integrator};
    use stablenet_gpu::{Gpu, ImageStage, StageSpec};
    let gpu = Gpu::new(&DeviceRequest::default().with_env()).expect("a GPU adapter (lavapipe in CI)");
    let cap = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let c = 1024;
    let steps = (cap / (4 * 9 * c * c) as u64 + 1) as usize;
    let spec = StageSpec {
        integrator: Integrator::Hamiltonian,
        act: Activation::Tanh,
        shape: Shape::new(c, 1, 1),
        steps,
        h: 0.1,
        gamma: 0.0,
    };
    let err = ImageStage::new(&gpu, spec, 1).err().expect("kernels beyond the binding limit").to_string();
    println!("{err}");
    assert!(err.contains("max_storage_buffer_binding_size") && err.contains("fewer channels or steps"), "{err}");
}
