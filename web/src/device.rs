//! Opening WebGPU for NAVA: the adapter's description and limits, the limits the kernels need, and a device
//! that asks for exactly those (raised to the adapter's own buffer sizes, so that large weights fit).

use nava::gpu::{AdapterSummary, Caps, Gpu, GpuOptions};

use crate::error::WebError;

/// What every kernel variant the library may pick needs from a device.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// The most storage bindings of one kernel.
    pub storage_buffers_per_stage: u32,
    /// The largest `WG` override of any kernel.
    pub invocations_per_workgroup: u32,
    /// The batch's uniform ring is bound with a dynamic offset.
    pub dynamic_uniform_buffers: u32,
    /// The smallest binding that runs the built-in tiny model (larger models check their own arrays).
    pub storage_binding_bytes: u64,
}

impl Needs {
    /// Derived from the kernel registry, so a new family with more bindings raises it by itself.
    pub fn of_kernels() -> Self {
        // Variants behind native-only extensions (cooperative matrices) never run in a browser, and the library
        // picks them only where the device offers them.
        let specs: Vec<_> = nava::kernels::all_variants()
            .into_iter()
            .filter(|s| !s.enables.contains(&"wgpu_cooperative_matrix"))
            .collect();
        // Every binding of a kernel is a storage buffer; `Params` come through the one dynamic uniform.
        let storage = specs.iter().map(|s| s.bindings.len());
        let wg = specs.iter().flat_map(|s| s.constants.iter()).filter(|(n, _)| *n == "WG").map(|(_, v)| *v as u32);
        Self {
            storage_buffers_per_stage: storage.max().unwrap_or(0) as u32,
            invocations_per_workgroup: wg.max().unwrap_or(64).max(64),
            dynamic_uniform_buffers: 1,
            storage_binding_bytes: 16 << 20,
        }
    }

    /// Every way `limits` falls short, in words a user can act on.
    pub fn lacks(&self, l: &wgpu::Limits) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, have: u64, need: u64, why: &str| {
            if have < need {
                out.push(format!("{name} is {have}, {why} need {need}"));
            }
        };
        check(
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage.into(),
            self.storage_buffers_per_stage.into(),
            "the kernels",
        );
        check(
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup.into(),
            self.invocations_per_workgroup.into(),
            "the kernels' workgroups",
        );
        check(
            "maxComputeWorkgroupSizeX",
            l.max_compute_workgroup_size_x.into(),
            self.invocations_per_workgroup.into(),
            "the kernels' workgroups",
        );
        check(
            "maxDynamicUniformBuffersPerPipelineLayout",
            l.max_dynamic_uniform_buffers_per_pipeline_layout.into(),
            self.dynamic_uniform_buffers.into(),
            "the kernel launches",
        );
        check(
            "maxStorageBufferBindingSize",
            l.max_storage_buffer_binding_size,
            self.storage_binding_bytes,
            "the tiny model's activations",
        );
        out
    }

    /// The limits requested from the device: WebGPU's defaults, raised to what the kernels need and to the
    /// adapter's own buffer and binding sizes.
    pub fn request(&self, adapter: &wgpu::Limits) -> wgpu::Limits {
        let mut l = wgpu::Limits::default();
        l.max_storage_buffers_per_shader_stage =
            self.storage_buffers_per_stage.max(l.max_storage_buffers_per_shader_stage);
        l.max_compute_invocations_per_workgroup =
            self.invocations_per_workgroup.max(l.max_compute_invocations_per_workgroup);
        l.max_compute_workgroup_size_x = self.invocations_per_workgroup.max(l.max_compute_workgroup_size_x);
        l.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
        l.max_buffer_size = adapter.max_buffer_size;
        l.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size;
        l.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
        l
    }
}

/// The adapter's description and the limits the page shows.
pub fn describe(summary: &AdapterSummary, features: wgpu::Features, l: &wgpu::Limits) -> serde_json::Value {
    let caps = Caps::from_features(features);
    serde_json::json!({
        "name": summary.name,
        "backend": summary.backend,
        "deviceType": summary.device_type,
        "driver": summary.driver,
        "driverInfo": summary.driver_info,
        "shaderF16": caps.shader_f16,
        "subgroups": caps.subgroup,
        "limits": {
            "maxBufferSize": l.max_buffer_size,
            "maxStorageBufferBindingSize": l.max_storage_buffer_binding_size,
            "maxStorageBuffersPerShaderStage": l.max_storage_buffers_per_shader_stage,
            "maxComputeInvocationsPerWorkgroup": l.max_compute_invocations_per_workgroup,
            "maxComputeWorkgroupStorageSize": l.max_compute_workgroup_storage_size,
            "maxComputeWorkgroupsPerDimension": l.max_compute_workgroups_per_dimension,
        },
    })
}

/// Opens the browser's adapter, checks it against [`Needs`], and wraps the device in the library's [`Gpu`].
pub async fn open() -> Result<(Gpu, serde_json::Value), WebError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| WebError::NoAdapter(e.to_string()))?;
    let summary = AdapterSummary::of(&adapter.get_info());
    let limits = adapter.limits();
    let needs = Needs::of_kernels();
    let lacks = needs.lacks(&limits);
    if !lacks.is_empty() {
        return Err(WebError::AdapterTooSmall { adapter: summary.to_string(), lacks });
    }
    // The web backend has no subgroups (naga rejects `enable subgroups;`), so only f16 is asked for.
    let features = adapter.features() & Caps::wanted() & wgpu::Features::SHADER_F16;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("nava"),
            required_features: features,
            required_limits: needs.request(&limits),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: Default::default(),
        })
        .await
        .map_err(|e| nava::gpu::GpuError::RequestDevice { adapter: summary.to_string(), reason: e.to_string() })?;
    let mut info = describe(&summary, device.features(), &device.limits());
    info["needs"] = serde_json::json!({
        "maxStorageBuffersPerShaderStage": needs.storage_buffers_per_stage,
        "maxComputeInvocationsPerWorkgroup": needs.invocations_per_workgroup,
        "maxStorageBufferBindingSize": needs.storage_binding_bytes,
    });
    Ok((Gpu::from_device(device, queue, summary, &GpuOptions::default()), info))
}
