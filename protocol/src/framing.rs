//! Line framing of the socket protocol: one JSON object per `\n`-terminated line, capped in size.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame larger than {max} bytes")]
    TooLarge { max: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `\n`-terminated lines of at most `max` bytes (without the newline).
///
/// Two lines in one read come out one by one; a final line without newline is returned at EOF;
/// a line over `max` is refused as soon as it passes `max`, before more of it is buffered.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            max,
        }
    }

    /// The reader underneath, with whatever it has buffered beyond the last line.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next line, `None` at a clean EOF.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.buf.clear();
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(if self.buf.is_empty() {
                    None
                } else {
                    Some(std::mem::take(&mut self.buf))
                });
            }
            match memchr(available) {
                Some(i) => {
                    if self.buf.len() + i > self.max {
                        return Err(FrameError::TooLarge { max: self.max });
                    }
                    self.buf.extend_from_slice(&available[..i]);
                    self.inner.consume(i + 1);
                    return Ok(Some(std::mem::take(&mut self.buf)));
                }
                None => {
                    let n = available.len();
                    if self.buf.len() + n > self.max {
                        return Err(FrameError::TooLarge { max: self.max });
                    }
                    self.buf.extend_from_slice(available);
                    self.inner.consume(n);
                }
            }
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Writes one message as a line.
pub async fn write_line<W: AsyncWrite + Unpin, T: serde::Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = LineReader::new(BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        loop {
            match r.next_line().await {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn two_frames_in_one_read_and_a_truncated_last_one() {
        let got = lines(b"{\"a\":1}\n{\"b\":2}\n{\"c\"", 100).await;
        assert_eq!(
            got,
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Ok(b"{\"b\":2}".to_vec()),
                Ok(b"{\"c\"".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_without_reading_it_all() {
        let mut big = vec![b'x'; 50];
        big.push(b'\n');
        let got = lines(&big, 10).await;
        assert_eq!(got, vec![Err("frame larger than 10 bytes".to_string())]);
        // exactly at the limit is fine
        let got = lines(b"0123456789\n", 10).await;
        assert_eq!(got, vec![Ok(b"0123456789".to_vec())]);
    }
}
