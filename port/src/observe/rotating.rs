//! The recording's file on disk, rotated by size (`--record-max-bytes` × `--record-files`):
//! FILE, FILE.1, ... FILE.(files-1), the oldest removed.

use super::writer::Lines;
use std::io::Write;
use std::path::PathBuf;

/// The recording file, rotated by size: FILE, FILE.1, ... FILE.(files-1).
pub(super) struct Rotating {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
    max: u64,
    files: usize,
}

impl Rotating {
    pub(super) fn open(path: PathBuf, max: u64, files: usize) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let written = file.metadata()?.len();
        Ok(Rotating {
            path,
            file: std::io::BufWriter::new(file),
            written,
            max,
            files,
        })
    }

    fn numbered(&self, i: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        for i in (1..self.files.saturating_sub(1)).rev() {
            match std::fs::rename(self.numbered(i), self.numbered(i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.files > 1 {
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.file = std::io::BufWriter::new(file);
        self.written = 0;
        Ok(())
    }
}

impl Lines for Rotating {
    fn line(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.max {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_the_oldest_goes() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("calls.jsonl");
        let mut out = Rotating::open(path.clone(), 10, 3).expect("it opens");
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            out.line(line.as_bytes()).expect("written");
        }
        out.flush().expect("flushed");
        let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("a file");
        assert_eq!(read(&path), "dddddd\n");
        assert_eq!(read(&out.numbered(1)), "cccccc\n");
        assert_eq!(read(&out.numbered(2)), "bbbbbb\n");
        assert!(
            !out.numbered(3).exists(),
            "three files are kept, the oldest (aaaaaa) went"
        );
    }
}
