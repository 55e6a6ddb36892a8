//! Reading a request body under a size limit, without buffering past it.

use http_body_util::BodyExt;
use hyper::body::Body;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Declared or actual size over the limit.
    TooLarge,
    /// The connection failed mid-body.
    Read(String),
}

/// Reads `body` into memory. A declared length over `limit` is refused before
/// reading; otherwise frames are appended until the total would pass
/// `limit`, at which point reading stops (the rest is never buffered).
pub(crate) async fn read_limited<B>(
    mut body: B,
    declared: Option<u64>,
    limit: u64,
) -> Result<Vec<u8>, BodyError>
where
    B: Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(16 * 1024).min(limit) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > limit {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>;

    fn chunks(n: usize, size: usize) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<_> = (0..n)
            .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn reads_up_to_the_limit_exactly() {
        let got = read_limited(chunks(4, 256), None, 1024).await.unwrap();
        assert_eq!(got.len(), 1024);
    }

    #[tokio::test]
    async fn refuses_a_stream_passing_the_limit() {
        assert!(matches!(
            read_limited(chunks(5, 256), None, 1024).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn refuses_a_declared_length_before_reading() {
        let body = Full::new(Bytes::from_static(b"{}"));
        assert!(matches!(
            read_limited(body, Some(2000), 1024).await,
            Err(BodyError::TooLarge)
        ));
    }
}
