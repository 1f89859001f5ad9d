//! `nava info`: what the adapter is, what it allows, and which kernel variants will run on it.

use nava::gpu::{describe_adapters, Gpu, GpuOptions};

pub fn run(opts: &GpuOptions) -> Result<(), Box<dyn std::error::Error>> {
    let all = pollster_block_on(describe_adapters());
    println!("adapters found (best first):");
    for a in &all {
        println!("  {a}  driver: {} {}", a.driver, a.driver_info);
    }
    let g = Gpu::new_blocking(opts)?;
    let a = &g.adapter;
    println!("\nusing: {}", a.name);
    println!("  backend:      {}", a.backend);
    println!("  device type:  {}", a.device_type);
    println!("  driver:       {} {}", a.driver, a.driver_info);
    let l = &g.limits;
    println!("limits:");
    println!("  max_buffer_size:                   {}", human(l.max_buffer_size));
    println!("  max_storage_buffer_binding_size:   {}", human(l.max_storage_buffer_binding_size));
    println!("  max_storage_buffers_per_stage:     {}", l.max_storage_buffers_per_shader_stage);
    println!("  max_compute_workgroup_storage:     {}", human(l.max_compute_workgroup_storage_size as u64));
    println!("  max_compute_invocations_per_group: {}", l.max_compute_invocations_per_workgroup);
    println!("  max_workgroups_per_dimension:      {}", l.max_compute_workgroups_per_dimension);
    println!("  min_storage_buffer_offset_align:   {}", l.min_storage_buffer_offset_alignment);
    let c = g.caps;
    println!("features:");
    println!("  shader-f16:          {}", yes(c.shader_f16));
    println!("  subgroups:           {}", yes(c.subgroup));
    println!("  timestamp queries:   {}", yes(c.timestamp_query));
    println!("  cooperative matrix:  {}", yes(c.cooperative_matrix));
    for m in &g.coop_configs {
        println!(
            "    {}x{}x{} {:?} -> {:?}{}",
            m.m_size,
            m.n_size,
            m.k_size,
            m.ab_type,
            m.cr_type,
            if m.saturating_accumulation { " (saturating)" } else { "" }
        );
    }
    let sg = if c.subgroup_size > 0 { c.subgroup_size.to_string() } else { "varies".into() };
    println!("  subgroup size:       {sg}");
    println!("kernel variants:");
    for line in nava::kernels::selected_variants(&g) {
        println!("  {line}");
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB ({b} bytes)", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB ({b} bytes)", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB ({b} bytes)", b / 1024)
    }
}

fn pollster_block_on<F: std::future::Future>(f: F) -> F::Output {
    nava::gpu::block_on(f)
}
