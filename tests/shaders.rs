//! Every variant of every kernel family, expanded exactly as the launchers expand it, is valid WGSL to naga;
//! so is every file in `shaders/` that the variants pull in. Runs without a GPU.

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(label: &str, source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| format!("{label}: {}", e.emit_to_string(source)))?;
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| format!("{label}: {}", e.emit_to_string(source)))?;
    Ok(())
}

#[test]
fn every_kernel_variant_validates() {
    let variants = nava::kernels::all_variants();
    assert!(!variants.is_empty());
    let errors: Vec<String> = variants.iter().filter_map(|s| validate(&s.label, &s.source()).err()).collect();
    assert!(
        errors.is_empty(),
        "{} of {} variants fail validation:\n{}",
        errors.len(),
        variants.len(),
        errors.join("\n")
    );
}

#[test]
fn every_shader_file_is_used_by_a_variant() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let sources: Vec<String> = nava::kernels::all_variants().iter().map(|s| s.source()).collect();
    let mut files = Vec::new();
    for entry in walk(&dir) {
        let text = std::fs::read_to_string(&entry).expect("shader files are UTF-8");
        // A file is used when its first code line appears in some expanded variant.
        let marker = text.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//")).unwrap_or("");
        if !sources.iter().any(|s| s.contains(marker)) {
            files.push(entry.display().to_string());
        }
    }
    assert!(files.is_empty(), "shader files no variant uses: {files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("shaders/ exists").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "wgsl") {
            out.push(p);
        }
    }
    out
}

/// The Vulkan path: each variant, with its override constants set as its launcher sets them, translates to SPIR-V
/// (naga's own writer, as wgpu uses it). This covers variants that this machine's adapter cannot run, such as the
/// cooperative-matrix GEMM.
#[test]
fn every_kernel_variant_translates_to_spirv() {
    let mut errors = Vec::new();
    for s in nava::kernels::all_variants() {
        let source = s.source();
        let result = (|| -> Result<(), String> {
            let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
            let info = Validator::new(ValidationFlags::all(), Capabilities::all())
                .validate(&module)
                .map_err(|e| e.emit_to_string(&source))?;
            let mut constants = naga::back::PipelineConstants::default();
            for (name, value) in &s.constants {
                constants.insert(name.to_string(), *value);
            }
            let entry = Some((naga::ShaderStage::Compute, s.entry));
            let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, entry, &constants)
                .map_err(|e| format!("overrides: {e}"))?;
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: s.entry.into(),
            };
            naga::back::spv::write_vec(&module, &info, &Default::default(), Some(&pipeline))
                .map_err(|e| format!("SPIR-V: {e}"))?;
            Ok(())
        })();
        if let Err(e) = result {
            errors.push(format!("{}: {e}", s.label));
        }
    }
    assert!(errors.is_empty(), "{} variants do not translate to SPIR-V:\n{}", errors.len(), errors.join("\n"));
}

/// Every variant a browser can be given (none behind a native-only extension such as cooperative matrices) fits
/// WebGPU's default of 256 invocations per workgroup and the 10 storage buffers per stage of the smallest browser
/// adapter supported (SwiftShader), so the page's device check never asks for more.
#[test]
fn browser_variants_fit_webgpu_defaults() {
    let too_big: Vec<String> = nava::kernels::all_variants()
        .iter()
        .filter(|s| !s.enables.contains(&"wgpu_cooperative_matrix"))
        .filter(|s| {
            let wg = s.constants.iter().find(|(n, _)| *n == "WG").map_or(0.0, |(_, v)| *v);
            wg > 256.0 || s.bindings.len() > 10
        })
        .map(|s| s.label.clone())
        .collect();
    assert!(too_big.is_empty(), "variants beyond WebGPU's default limits: {too_big:?}");
}
