//! Output files that appear only when complete: data goes to a hidden temporary file beside the target, which is
//! renamed over it by [`AtomicFile::commit`]; dropping an uncommitted file (error, Ctrl-C) deletes the temporary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::OutputError;

pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let target = target.as_ref().to_path_buf();
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() {
            return Err(OutputError::Input(format!("{}: not a file name", target.display())));
        }
        let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(OutputError::Input(format!(
                "{}: the folder {} does not exist; create it first",
                target.display(),
                dir.display()
            )));
        }
        let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let file = File::create(&temp).map_err(|source| OutputError::File { path: temp.clone(), source })?;
        Ok(Self { target, temp, file: Some(BufWriter::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames the temporary file over the target.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutputError::File { path, source }
        };
        if let Some(w) = self.file.take() {
            let f =
                w.into_inner().map_err(|e| OutputError::File { path: self.temp.clone(), source: e.into_error() })?;
            f.sync_all().map_err(err(&self.temp))?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(err(&self.target))?;
        Ok(self.target.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().map_or(Ok(0), |f| f.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
