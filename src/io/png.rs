//! PNG output for `--frames-dir`: one RGB8 file per frame, `frame_00000.png` onwards.

use std::path::{Path, PathBuf};

use super::{AtomicFile, Frame, OutputError};

/// Writes `frame` as `dir/frame_{index:05}.png` (atomically) and returns its path.
pub fn write_frame(dir: &Path, index: usize, frame: &Frame) -> Result<PathBuf, OutputError> {
    let path = dir.join(format!("frame_{index:05}.png"));
    let mut file = AtomicFile::create(&path)?;
    let encode = |e: png::EncodingError| OutputError::Encode { what: "PNG", problem: e.to_string() };
    {
        let mut enc = png::Encoder::new(&mut file, frame.width as u32, frame.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(encode)?;
        w.write_image_data(&frame.rgb).map_err(encode)?;
        w.finish().map_err(encode)?;
    }
    file.commit()
}
