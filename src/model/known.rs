//! The official files NAVA runs from (NAVA.md §0), by the short names the CLI uses (`nava-dit`, `umt5`,
//! `wan-vae`, `ltx-audio-vae`, `redimnet`): each one's full-size key table, its configuration, how to open it,
//! and what to say when a file does not match.

use std::path::Path;

use crate::model::dit::DitConfig;
use crate::weights::{Checkpoint, KeyTable, OfficialFile, WeightError};

/// One official weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KnownModel {
    /// `NAVA.safetensors` or `NAVA_fp8.safetensors`: the denoiser, keys under `backbone.`.
    NavaDit,
    Umt5,
    WanVae,
    LtxAudioVae,
    Redimnet,
}

impl KnownModel {
    pub const ALL: [KnownModel; 5] = [Self::NavaDit, Self::Umt5, Self::WanVae, Self::LtxAudioVae, Self::Redimnet];

    pub fn name(self) -> &'static str {
        match self {
            Self::NavaDit => "nava-dit",
            Self::Umt5 => "umt5",
            Self::WanVae => "wan-vae",
            Self::LtxAudioVae => "ltx-audio-vae",
            Self::Redimnet => "redimnet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The official file's name, for messages.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::NavaDit => "NAVA.safetensors (or NAVA_fp8.safetensors)",
            Self::Umt5 => "models_t5_umt5-xxl-enc-bf16.pth",
            Self::WanVae => "Wan2.2_VAE.pth",
            Self::LtxAudioVae => "ltx-2.3-22b-dev_audio_vae.safetensors",
            Self::Redimnet => "ReDimNet-M (M-vb2+vox2+cnc-ft_mix.pt)",
        }
    }

    fn official(self) -> Option<OfficialFile> {
        match self {
            Self::NavaDit => None,
            Self::Umt5 => Some(OfficialFile::Umt5),
            Self::WanVae => Some(OfficialFile::WanVae),
            Self::LtxAudioVae => Some(OfficialFile::LtxAudioVae),
            Self::Redimnet => Some(OfficialFile::Redimnet),
        }
    }

    /// Every key of the full-size official file with its shape.
    pub fn key_table(self) -> KeyTable {
        match self.official() {
            None => DitConfig::nava_6b().key_table("backbone."),
            Some(f) => f.table().keys,
        }
    }

    /// The module configuration the file was made for (recorded in converted manifests).
    pub fn config(self) -> serde_json::Value {
        match self.official() {
            None => serde_json::to_value(DitConfig::nava_6b()).expect("DitConfig serialises"),
            Some(f) => f.table().config,
        }
    }

    /// What to tell a user whose file does not match this model's table.
    pub fn hint(self) -> String {
        format!(
            "expected the official {} for `{}`: is this another model's file, or a partial or older download?",
            self.file_name(),
            self.name()
        )
    }

    /// Opens the file; a ReDimNet `.pt` (`{"model_config", "state_dict"}`) is narrowed to its `state_dict`, whose
    /// keys are the table's.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Checkpoint, WeightError> {
        match Checkpoint::open(path)? {
            Checkpoint::Pth(p) if self == Self::Redimnet && p.root().get("state_dict").is_some() => {
                Ok(Checkpoint::Pth(p.select("state_dict")?))
            }
            c => Ok(c),
        }
    }
}
