//! Adapter selection and device creation.
//!
//! The user chooses the adapter: by a name substring (`--device` or `STABLENET_DEVICE`), or
//! forces the fallback (software) adapter (`STABLENET_FALLBACK=1`, e.g. lavapipe). The device
//! is created with the adapter's real limits, not wgpu's conservative defaults (which cap
//! storage bindings at 128 MiB), so large batches fit where the hardware allows.
use anyhow::{Context, Result, bail};

/// The largest storage buffer a kernel can bind on an adapter with these limits, in bytes.
pub fn binding_limit(lim: &wgpu::Limits) -> u64 {
    lim.max_storage_buffer_binding_size.min(lim.max_buffer_size)
}

/// The first `bytes` of `buffer` (MAP_READ, its copies submitted) as values of `T`: maps it,
/// waits for the device, copies and unmaps.
pub fn read_mapped<T: bytemuck::Pod>(device: &wgpu::Device, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<T>> {
    let slice = buffer.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let out = bytemuck::cast_slice::<u8, T>(&slice.get_mapped_range()?).to_vec();
    buffer.unmap();
    Ok(out)
}

/// Which adapter to use.
#[derive(Clone, Debug, Default)]
pub struct DeviceRequest {
    /// Case-insensitive substring of the adapter name.
    pub name: Option<String>,
    /// Use only software (CPU) adapters, such as lavapipe.
    pub fallback: bool,
}

impl DeviceRequest {
    /// `STABLENET_DEVICE` and `STABLENET_FALLBACK` fill what the caller left open.
    pub fn with_env(mut self) -> Self {
        if self.name.is_none() {
            self.name = std::env::var("STABLENET_DEVICE").ok().filter(|s| !s.is_empty());
        }
        if let Ok(v) = std::env::var("STABLENET_FALLBACK") {
            self.fallback |= matches!(v.as_str(), "1" | "true" | "yes");
        }
        self
    }
}

/// An open device with the adapter's description and limits. A clone shares the device (wgpu's
/// handles are reference counted): kernel tuning builds its trial networks on clones.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether the device writes GPU timestamps (the phase timings of `GpuNet::profile_step`).
    pub timestamps: bool,
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Every adapter wgpu can see, best first (discrete, integrated, virtual, software).
pub fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let mut list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    list.sort_by_key(|a| rank(a.get_info().device_type));
    list
}

/// Whether a hardware (non-software) GPU adapter exists.
pub fn hardware_available() -> bool {
    adapters().iter().any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{} ({:?}, {:?}, driver {})", info.name, info.backend, info.device_type, driver)
}

impl Gpu {
    pub fn new(req: &DeviceRequest) -> Result<Self> {
        let all = adapters();
        if all.is_empty() {
            bail!(
                "no GPU adapter found (no Vulkan, Metal or DX12 driver). On Debian, \
                 `apt-get install mesa-vulkan-drivers` provides the lavapipe software adapter"
            );
        }
        let names: Vec<String> = all.iter().map(|a| describe(&a.get_info())).collect();
        let chosen = all.into_iter().find(|a| {
            let info = a.get_info();
            let name_ok = req.name.as_ref().is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()));
            name_ok && (!req.fallback || info.device_type == wgpu::DeviceType::Cpu)
        });
        let Some(adapter) = chosen else {
            let mut wanted: Vec<String> = req.name.iter().map(|n| format!("a name containing \"{n}\"")).collect();
            if req.fallback {
                wanted.push("a software adapter (--fallback)".into());
            }
            bail!("no adapter has {}; available: {}", wanted.join(" and "), names.join("; "));
        };
        Self::from_adapter(&adapter)
    }

    /// Opens a device on this adapter with its real limits (wgpu's defaults cap storage
    /// bindings at 128 MiB).
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("stablenet"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("opening {}", describe(&info)))?;
        log::info!("GPU adapter: {}", describe(&info));
        Ok(Gpu { device, queue, info, limits, timestamps: !features.is_empty() })
    }

    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// The limits that size the kernels (workgroup memory and invocations bound the tiled
    /// steps' tiles; the binding and buffer sizes bound models and batches), for logs.
    pub fn describe_limits(&self) -> String {
        let l = &self.limits;
        format!(
            "workgroup memory {} bytes, {} invocations per workgroup, storage binding {} bytes, buffer {} bytes, \
             {} storage buffers per stage, {} workgroups per dimension",
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroups_per_dimension
        )
    }

    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A compute pipeline for `entry` of `module` with override constants (every kernel of the
    /// engine is built this way; workgroup memory is initialised by the kernels themselves).
    pub fn compute_pipeline(
        &self,
        layout: Option<&wgpu::PipelineLayout>,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    }
}
