//! A reader that tells how much has been read: progress within one input.

use std::io::{Read, Seek, SeekFrom};

/// Wraps a reader and calls `progress` with the byte count of every read.
/// Seeking passes through uncounted, so a reader that seeks back and reads
/// again is counted twice: callers cap the total at the input's length.
#[derive(Debug)]
pub struct Counted<R, P> {
    inner: R,
    progress: P,
}

impl<R, P: Fn(u64)> Counted<R, P> {
    /// `inner`, reporting each read to `progress`.
    pub fn new(inner: R, progress: P) -> Self {
        Counted { inner, progress }
    }
}

impl<R: Read, P: Fn(u64)> Read for Counted<R, P> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

impl<R: Seek, P> Seek for Counted<R, P> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn counts_every_read_and_passes_seeks_through() {
        let total = Cell::new(0u64);
        let mut r = Counted::new(std::io::Cursor::new(vec![7u8; 100]), |n| {
            total.set(total.get() + n)
        });
        let mut buf = [0u8; 30];
        r.read_exact(&mut buf).unwrap();
        r.seek(SeekFrom::Start(90)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!((rest.len(), total.get()), (10, 40));
    }
}
