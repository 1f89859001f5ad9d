//! Adapter choice: prefer a discrete GPU over an integrated one over a CPU driver, or take the one the user names
//! (`--adapter NAME` / `NAVA_ADAPTER`: a substring of the adapter name, or a backend: vulkan, metal, dx12, gl).

use super::GpuError;

/// What the kernels may use on this device, decided once from the adapter's features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    pub cooperative_matrix: bool,
    /// A subgroup-scoped 16×16×16 cooperative matrix product with f16 inputs and an f32 accumulator is offered
    /// (tensor cores): the GEMM of sub-f32 weight formats uses it.
    pub coop_f16_16: bool,
    /// The subgroup size when the adapter has only one (0 when it varies or is unknown): kernels that divide a
    /// workgroup into subgroups by count need it fixed.
    pub subgroup_size: u32,
}

impl Caps {
    pub fn from_features(f: wgpu::Features) -> Self {
        Self {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            cooperative_matrix: f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            coop_f16_16: false,
            subgroup_size: 0,
        }
    }

    /// Adds what the adapter says beyond its feature bits: its cooperative matrix configurations and its
    /// subgroup size range.
    pub fn with_adapter(mut self, info: &wgpu::AdapterInfo, coop: &[wgpu::CooperativeMatrixProperties]) -> Self {
        use wgpu::CooperativeScalarType as S;
        self.coop_f16_16 = self.cooperative_matrix
            && self.shader_f16
            && coop
                .iter()
                .any(|c| (c.m_size, c.n_size, c.k_size) == (16, 16, 16) && c.ab_type == S::F16 && c.cr_type == S::F32);
        if self.subgroup && info.subgroup_min_size == info.subgroup_max_size {
            self.subgroup_size = info.subgroup_min_size;
        }
        self
    }

    /// The optional features we ask for when the adapter offers them.
    pub fn wanted() -> wgpu::Features {
        wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
    }
}

/// A printable description of an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        Self {
            name: info.name.clone(),
            backend: backend_name(info.backend).to_string(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }
}

impl AdapterSummary {
    /// A software rasteriser on the CPU (lavapipe/llvmpipe, SwiftShader, WARP): kernels without barriers or
    /// workgroup memory suit these. Browsers do not always report the device type, so the name counts too.
    pub fn is_cpu(&self) -> bool {
        let text = format!("{} {} {}", self.name, self.driver, self.driver_info).to_ascii_lowercase();
        self.device_type == "Cpu"
            || ["llvmpipe", "lavapipe", "swiftshader", "microsoft basic render"].iter().any(|s| text.contains(s))
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    }
}

/// Lower is better: discrete, integrated, virtual, CPU; native APIs before GL.
#[cfg(not(target_arch = "wasm32"))]
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = u8::from(info.backend == wgpu::Backend::Gl);
    (kind, api)
}

/// Does the user's `--adapter` text select this adapter?
fn matches(info: &wgpu::AdapterInfo, wanted: &str) -> bool {
    let w = wanted.trim().to_ascii_lowercase();
    backend_name(info.backend) == w || info.name.to_ascii_lowercase().contains(&w)
}

/// Picks the best adapter, or the one `wanted` names.
pub(crate) async fn choose(instance: &wgpu::Instance, wanted: Option<&str>) -> Result<wgpu::Adapter, GpuError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut all = instance.enumerate_adapters(wgpu::Backends::all()).await;
        all.sort_by_key(|a| rank(&a.get_info()));
        let found: Vec<String> = all.iter().map(|a| AdapterSummary::of(&a.get_info()).to_string()).collect();
        let pick = match wanted {
            Some(w) => all.into_iter().find(|a| matches(&a.get_info(), w)),
            None => all.into_iter().next(),
        };
        pick.ok_or(GpuError::NoAdapter { wanted: wanted.map(str::to_string), found })
    }
    #[cfg(target_arch = "wasm32")]
    {
        // The browser exposes one adapter per power preference; the name filter still applies.
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|_| GpuError::NoAdapter { wanted: wanted.map(str::to_string), found: vec![] })?;
        match wanted {
            Some(w) if !matches(&adapter.get_info(), w) => Err(GpuError::NoAdapter {
                wanted: Some(w.to_string()),
                found: vec![AdapterSummary::of(&adapter.get_info()).to_string()],
            }),
            _ => Ok(adapter),
        }
    }
}

/// Every adapter the instance sees, best first (for `nava info`).
#[cfg(not(target_arch = "wasm32"))]
pub async fn describe_adapters() -> Vec<AdapterSummary> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let mut all = instance.enumerate_adapters(wgpu::Backends::all()).await;
    all.sort_by_key(|a| rank(&a.get_info()));
    all.iter().map(|a| AdapterSummary::of(&a.get_info())).collect()
}

#[cfg(target_arch = "wasm32")]
pub async fn describe_adapters() -> Vec<AdapterSummary> {
    Vec::new()
}
