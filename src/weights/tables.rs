//! Key tables of the official files NAVA loads besides its DiT (whose table comes from `DitConfig`): the key →
//! shape lists of the full-size modules, as the oracle cases record them in `keys_full.json`
//! (tests/oracles/README.md), with the module config. One JSON file per official file in `tables/`; the test
//! `embedded_tables_equal_the_oracle_tables` (tests/convert.rs) keeps each equal to its `keys_full.json`.
//!
//! `ltx_audio_vae.json` joins two cases: `ltx-2.3-22b-dev_audio_vae.safetensors` holds the audio VAE under
//! `audio_vae.` and the vocoder with bandwidth extension under `vocoder.` (NAVA.md §7.2–7.3).

use serde::Deserialize;

use super::KeyTable;

/// An official file whose key table is embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfficialFile {
    /// `models_t5_umt5-xxl-enc-bf16.pth`: the UMT5-XXL encoder (NAVA.md §5.1).
    Umt5,
    /// `Wan2.2_VAE.pth` (NAVA.md §3.1, §7.1).
    WanVae,
    /// `ltx-2.3-22b-dev_audio_vae.safetensors`: audio VAE + vocoder (NAVA.md §7.2–7.3).
    LtxAudioVae,
    /// ReDimNet-M `M-vb2+vox2+cnc-ft_mix.pt`, the tensors under its `state_dict` (NAVA.md §5.2).
    Redimnet,
}

/// One embedded table as its data file states it.
#[derive(Clone, Debug, Deserialize)]
pub struct OfficialTable {
    /// Which file and key prefixes the table describes.
    pub file: String,
    /// The oracle cases (tests/oracles/<case>/keys_full.json) it was transcribed from, in key order.
    pub oracles: Vec<String>,
    /// The reference module's configuration for the full-size file.
    pub config: serde_json::Value,
    /// Every key with its shape, in module order.
    pub keys: KeyTable,
}

impl OfficialFile {
    pub const ALL: [OfficialFile; 4] = [Self::Umt5, Self::WanVae, Self::LtxAudioVae, Self::Redimnet];

    fn text(self) -> &'static str {
        match self {
            Self::Umt5 => include_str!("tables/umt5.json"),
            Self::WanVae => include_str!("tables/wan_vae.json"),
            Self::LtxAudioVae => include_str!("tables/ltx_audio_vae.json"),
            Self::Redimnet => include_str!("tables/redimnet.json"),
        }
    }

    /// The parsed table (a few hundred microseconds: parse once per use).
    pub fn table(self) -> OfficialTable {
        // The files are part of the crate and a test parses each one, so a failure is a build defect.
        serde_json::from_str(self.text()).expect("embedded key tables are valid JSON (tests/convert.rs parses them)")
    }
}
