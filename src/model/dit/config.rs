//! DiT configuration in the reference JSON form (`NAVA_6B.json` of ernie-research/NAVA), NAVA.md §4.1, and the
//! key table it implies. Every shape and count the DiT uses comes from here.

use serde::{Deserialize, Serialize};

use crate::model::ModelError;
use crate::weights::KeyTable;

fn yes() -> bool {
    true
}
fn zero() -> usize {
    0
}
fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct DitConfig {
    pub dim: usize,
    pub ffn_dim: usize,
    pub freq_dim: usize,
    pub num_heads: usize,
    pub num_double_layers: usize,
    pub num_single_layers: usize,
    #[serde(default = "zero")]
    pub num_double_final_layers: usize,
    pub vid_in_dim: usize,
    pub vid_out_dim: usize,
    pub audio_in_dim: usize,
    pub audio_out_dim: usize,
    pub patch_size: [usize; 3],
    pub text_len: usize,
    pub text_dim: usize,
    pub eps: f64,
    #[serde(default = "one")]
    pub temporal_rope_scaling_factor: f64,
    #[serde(default = "yes")]
    pub qk_norm: bool,
    #[serde(default = "yes")]
    pub cross_attn_norm: bool,
    /// Alignment blocks share norm3 and the FFN (the released model).
    #[serde(default = "yes")]
    pub no_split_norm_ffn: bool,
    #[serde(default = "yes")]
    pub add_spk_emb: bool,
}

/// Speaker embeddings from ReDimNet are 192-d.
pub const SPK_DIM: usize = 192;

impl DitConfig {
    /// NAVA_6B as released: 10 alignment + 20 fusion blocks at width 3072.
    pub fn nava_6b() -> Self {
        Self {
            dim: 3072,
            ffn_dim: 14336,
            freq_dim: 256,
            num_heads: 24,
            num_double_layers: 10,
            num_single_layers: 20,
            num_double_final_layers: 0,
            vid_in_dim: 48,
            vid_out_dim: 48,
            audio_in_dim: 128,
            audio_out_dim: 128,
            patch_size: [1, 2, 2],
            text_len: 512,
            text_dim: 4096,
            eps: 1e-6,
            temporal_rope_scaling_factor: 0.24,
            qk_norm: true,
            cross_attn_norm: true,
            no_split_norm_ffn: true,
            add_spk_emb: true,
        }
    }

    /// A small model of the same architecture (width 128, 2 + 2 blocks) for smoke tests and the built-in default.
    pub fn tiny() -> Self {
        Self {
            dim: 128,
            ffn_dim: 256,
            freq_dim: 64,
            num_heads: 2,
            num_double_layers: 2,
            num_single_layers: 2,
            text_len: 32,
            text_dim: 64,
            ..Self::nava_6b()
        }
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_str(text).map_err(|e| ModelError::Config(format!("DiT config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Refuses what this implementation does not build (and the release never used).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_heads == 0 || !self.dim.is_multiple_of(self.num_heads) || !self.head_dim().is_multiple_of(2) {
            return bad(format!("dim {} must split into {} heads of even size", self.dim, self.num_heads));
        }
        if !self.qk_norm || !self.cross_attn_norm || !self.no_split_norm_ffn {
            return bad("qk_norm, cross_attn_norm and no_split_norm_ffn must be true (the released NAVA)".into());
        }
        if self.num_double_final_layers != 0 {
            return bad("num_double_final_layers > 0 is not supported".into());
        }
        if self.patch_size[0] != 1 || !self.freq_dim.is_multiple_of(2) {
            return bad("the temporal patch size must be 1 and freq_dim even".into());
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads
    }

    /// Hidden width of the audio embed's SwiGLU ConvMLP: 2/3 of 4·dim, rounded up to a multiple of 256.
    pub fn audio_mlp_hidden(&self) -> usize {
        let h = 2 * (4 * self.dim) / 3;
        h.div_ceil(256) * 256
    }

    /// Values per video token: vid_in_dim · pt · ph · pw.
    pub fn patch_values(&self) -> usize {
        self.vid_in_dim * self.patch_size.iter().product::<usize>()
    }

    /// Every key under `prefix` with its shape, in the reference's module order.
    pub fn key_table(&self, prefix: &str) -> KeyTable {
        let d = self.dim;
        let [pt, ph, pw] = self.patch_size;
        let h = self.audio_mlp_hidden();
        let mut t: KeyTable = Vec::new();
        let mut add = |k: &str, s: &[usize]| t.push((format!("{prefix}{k}"), s.to_vec()));
        add("patch_embedding.weight", &[d, self.vid_in_dim, pt, ph, pw]);
        add("patch_embedding.bias", &[d]);
        add("patch_embedding_audio.0.weight", &[d, self.audio_in_dim, 7]);
        add("patch_embedding_audio.0.bias", &[d]);
        add("patch_embedding_audio.2.w1.weight", &[h, d, 7]);
        add("patch_embedding_audio.2.w2.weight", &[d, h, 7]);
        add("patch_embedding_audio.2.w3.weight", &[h, d, 7]);
        if self.add_spk_emb {
            add("speaker_embedding.null_token", &[1, d]);
            add("speaker_embedding.net.0.weight", &[SPK_DIM]);
            add("speaker_embedding.net.0.bias", &[SPK_DIM]);
            add("speaker_embedding.net.1.weight", &[d, SPK_DIM]);
            add("speaker_embedding.net.1.bias", &[d]);
            add("speaker_embedding.net.3.weight", &[d, d]);
            add("speaker_embedding.net.3.bias", &[d]);
            add("speaker_embedding.out_norm.weight", &[d]);
            add("speaker_embedding.out_norm.bias", &[d]);
        }
        add("text_embedding.0.weight", &[d, self.text_dim]);
        add("text_embedding.0.bias", &[d]);
        add("text_embedding.2.weight", &[d, d]);
        add("text_embedding.2.bias", &[d]);
        add("time_embedding.0.weight", &[d, self.freq_dim]);
        add("time_embedding.0.bias", &[d]);
        add("time_embedding.2.weight", &[d, d]);
        add("time_embedding.2.bias", &[d]);
        add("time_projection.1.weight", &[6 * d, d]);
        add("time_projection.1.bias", &[6 * d]);
        let attn = |add: &mut dyn FnMut(&str, &[usize]), p: &str, audio: bool| {
            let suffixes: &[&str] = if audio { &["", "_audio"] } else { &[""] };
            for sfx in suffixes {
                for lin in ["q", "k", "v", "o"] {
                    add(&format!("{p}.{lin}{sfx}.weight"), &[d, d]);
                    add(&format!("{p}.{lin}{sfx}.bias"), &[d]);
                }
                add(&format!("{p}.norm_q{sfx}.weight"), &[d]);
                add(&format!("{p}.norm_k{sfx}.weight"), &[d]);
            }
        };
        for (kind, n, audio) in
            [("double_blocks", self.num_double_layers, true), ("single_blocks", self.num_single_layers, false)]
        {
            for i in 0..n {
                let b = format!("{kind}.{i}");
                attn(&mut add, &format!("{b}.self_attn"), audio);
                add(&format!("{b}.norm3.weight"), &[d]);
                add(&format!("{b}.norm3.bias"), &[d]);
                attn(&mut add, &format!("{b}.cross_attn"), audio);
                add(&format!("{b}.ffn.0.weight"), &[self.ffn_dim, d]);
                add(&format!("{b}.ffn.0.bias"), &[self.ffn_dim]);
                add(&format!("{b}.ffn.2.weight"), &[d, self.ffn_dim]);
                add(&format!("{b}.ffn.2.bias"), &[d]);
                add(&format!("{b}.modulation.modulation"), &[1, 6, d]);
                if audio {
                    add(&format!("{b}.modulation_audio.modulation"), &[1, 6, d]);
                }
            }
        }
        add("head.modulation", &[1, 2, d]);
        add("head.head.weight", &[self.vid_out_dim * pt * ph * pw, d]);
        add("head.head.bias", &[self.vid_out_dim * pt * ph * pw]);
        add("head_audio.modulation", &[1, 2, d]);
        add("head_audio.head.weight", &[self.audio_out_dim, d]);
        add("head_audio.head.bias", &[self.audio_out_dim]);
        t
    }
}
