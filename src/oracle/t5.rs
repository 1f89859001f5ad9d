//! The `nava_t5` case: the UMT5 encoder (`T5Encoder`) on padded batches with a key mask, its output, block traces
//! and bucket table compared, and the unpadded path ([`TextEncoder::encode`], every row of the batch in one forward)
//! against the valid rows.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::text_encoder::{relative_position_buckets, T5Config, TextEncoder, MAX_DIST};
use crate::model::ModelError;
use crate::weights::Checkpoint;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: T5Config = serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let encoder = TextEncoder::load(g, &weights, config.clone(), WeightFormat::F32)?;
    let io = Io::open(dir)?;
    let subcases = meta["subcases"].as_object().ok_or_else(|| case("meta.json has no subcases".into()))?;
    let mut out = Vec::new();
    for sub in subcases.keys() {
        let key = format!("in.{sub}.ids");
        let ids = io.get(&key).ok_or_else(|| case(format!("missing {key}")))?;
        let mask = io.get(&format!("in.{sub}.mask")).ok_or_else(|| case(format!("missing in.{sub}.mask")))?;
        let [b, l] = io.shape(&key).unwrap_or_default()[..] else {
            return Err(case(format!("{key} is not [B, L]")));
        };
        // Batch rows run one after another; traces are gathered into the reference's [B, L, ..] order.
        let mut traces: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut hidden = Vec::new();
        let mut unpadded = Vec::new();
        let mut valid_rows = Vec::new();
        let mut valid_ids: Vec<Vec<u32>> = Vec::new();
        for r in 0..b {
            let ids: Vec<u32> = ids[r * l..(r + 1) * l].iter().map(|&v| v as u32).collect();
            let mask: Vec<bool> = mask[r * l..(r + 1) * l].iter().map(|&v| v != 0.0).collect();
            let mut failed = None;
            let mut record = |name: &str, t: &GpuTensor| {
                if name.starts_with("pos_bias_") && r > 0 {
                    return; // the same for every row of the batch: the reference traces it once
                }
                match g.read_f32_blocking(t) {
                    Ok(v) => traces.entry(name.to_string()).or_default().extend(v),
                    Err(e) => failed = Some(e),
                }
            };
            let y = encoder.forward(g, &ids, Some(&mask), Some(&mut record))?;
            if let Some(e) = failed {
                return Err(ModelError::from(e).into());
            }
            let y = g.read_f32_blocking(&y).map_err(ModelError::from)?;
            // The pipeline's path: only the valid tokens, no padding, all rows of the batch in one forward.
            valid_ids.push(ids.iter().zip(&mask).filter(|(_, &m)| m).map(|(&i, _)| i).collect::<Vec<u32>>());
            let d = config.dim;
            for (i, &m) in mask.iter().enumerate() {
                if m {
                    valid_rows.extend_from_slice(&y[i * d..(i + 1) * d]);
                }
            }
            hidden.extend(y);
        }
        let prompts: Vec<&[u32]> = valid_ids.iter().map(|v| v.as_slice()).collect();
        for u in encoder.encode(g, &prompts)? {
            unpadded.extend(g.read_f32_blocking(&u).map_err(ModelError::from)?);
        }
        let mut check = |name: String, got: &[f32]| {
            if let Some(want) = io.get(&name) {
                out.push(compare(&name, got, &want, F32_ABS, F32_REL));
            }
        };
        check(format!("out.{sub}.last_hidden_state"), &hidden);
        check(format!("trace.{sub}.f64.last_hidden_state"), &hidden);
        for (name, v) in &traces {
            check(format!("trace.{sub}.{name}"), v);
        }
        let buckets: Vec<f32> =
            relative_position_buckets(l, config.num_buckets, MAX_DIST).into_iter().map(|v| v as f32).collect();
        check(format!("trace.{sub}.rel_pos_bucket"), &buckets);
        // `encode` (valid tokens only) against the padded forward's valid rows: the mask must make them equal.
        out.push(compare(
            &format!("encode({sub}) valid rows vs padded forward"),
            &unpadded,
            &valid_rows,
            F32_ABS,
            F32_REL,
        ));
    }
    Ok(out)
}
