//! WAV output: 16-bit PCM, interleaved channels (RIFF/WAVE, `fmt ` + `data`).

use std::io::Write;

use super::Audio;

/// Writes `audio` as a 16-bit PCM WAV file.
pub fn write_wav(out: &mut impl Write, audio: &Audio) -> std::io::Result<()> {
    let pcm = audio.to_i16();
    let data_len = (pcm.len() * 2) as u32;
    let block_align = audio.channels as u32 * 2;
    let mut h = Vec::with_capacity(44);
    h.extend(b"RIFF");
    h.extend((36 + data_len).to_le_bytes());
    h.extend(b"WAVEfmt ");
    h.extend(16u32.to_le_bytes());
    h.extend(1u16.to_le_bytes()); // PCM
    h.extend(audio.channels.to_le_bytes());
    h.extend(audio.sample_rate.to_le_bytes());
    h.extend((audio.sample_rate * block_align).to_le_bytes());
    h.extend((block_align as u16).to_le_bytes());
    h.extend(16u16.to_le_bytes());
    h.extend(b"data");
    h.extend(data_len.to_le_bytes());
    out.write_all(&h)?;
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    out.write_all(&bytes)
}
