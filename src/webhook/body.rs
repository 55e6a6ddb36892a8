//! Reading a request body under a size limit, with a buffer that grows with
//! the bytes that actually arrive: a declared `Content-Length` bounds the
//! buffer but reserves no memory, so senders that declare much and send
//! nothing hold nothing.

use http_body_util::BodyExt;
use hyper::body::Body;

/// The first allocation of a body buffer; then it doubles, up to the
/// declared length (or the limit).
const FIRST_CAPACITY: usize = 8 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Declared or actual size over the limit.
    TooLarge,
    /// The buffer could not grow: no room left in the byte budget.
    OverBudget,
    /// The connection failed mid-body.
    Read(String),
}

/// Refuses a declared length over `limit`, before anything is read.
pub(crate) fn check_declared(declared: Option<u64>, limit: u64) -> Result<(), BodyError> {
    match declared {
        Some(n) if n > limit => Err(BodyError::TooLarge),
        _ => Ok(()),
    }
}

/// Reads `body` into memory. Frames are appended until the total would pass
/// `limit`, at which point reading stops (the rest is never buffered).
/// Before the buffer grows to a new capacity, `cover(capacity)` must agree
/// (the byte budget); it grows geometrically, never past `declared` (when
/// known) or `limit`.
pub(crate) async fn read_limited<B>(
    mut body: B,
    declared: Option<u64>,
    limit: u64,
    mut cover: impl FnMut(u64) -> bool,
) -> Result<Vec<u8>, BodyError>
where
    B: Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let bound = declared.unwrap_or(limit).min(limit) as usize;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let needed = out.len() + data.len();
        if needed as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        if needed > out.capacity() {
            let capacity = grown(out.capacity(), needed, bound);
            if !cover(capacity as u64) {
                return Err(BodyError::OverBudget);
            }
            out.reserve_exact(capacity - out.len());
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// The next capacity of a buffer of `capacity` that must hold `needed`
/// bytes: doubling from [`FIRST_CAPACITY`], at most `bound` (unless more is
/// needed).
fn grown(capacity: usize, needed: usize, bound: usize) -> usize {
    (capacity * 2).max(FIRST_CAPACITY).min(bound).max(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>;

    fn chunks(n: usize, size: usize) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<_> = (0..n)
            .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn any(_: u64) -> bool {
        true
    }

    #[tokio::test]
    async fn reads_up_to_the_limit_exactly() {
        let got = read_limited(chunks(4, 256), None, 1024, any).await.unwrap();
        assert_eq!(got.len(), 1024);
    }

    #[tokio::test]
    async fn refuses_a_stream_passing_the_limit() {
        assert!(matches!(
            read_limited(chunks(5, 256), None, 1024, any).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn refuses_a_declared_length_before_reading() {
        assert!(matches!(
            check_declared(Some(2000), 1024),
            Err(BodyError::TooLarge)
        ));
        assert!(check_declared(Some(1024), 1024).is_ok());
        assert!(check_declared(None, 1024).is_ok());
    }

    #[tokio::test]
    async fn a_declared_mebibyte_allocates_nothing_up_front() {
        let mut asked = Vec::new();
        let got = read_limited(chunks(0, 0), Some(1 << 20), 1 << 20, |c| {
            asked.push(c);
            true
        })
        .await
        .unwrap();
        assert_eq!(got.capacity(), 0, "nothing arrived, nothing allocated");
        assert!(asked.is_empty());
        let got = read_limited(chunks(1, 100), Some(1 << 20), 1 << 20, any)
            .await
            .unwrap();
        assert_eq!(got.capacity(), FIRST_CAPACITY, "100 bytes arrived");
    }

    #[tokio::test]
    async fn the_buffer_grows_with_arrivals_up_to_the_declared_length() {
        let declared = 300 * 1000;
        let mut asked = Vec::new();
        let got = read_limited(chunks(300, 1000), Some(declared), 1 << 20, |c| {
            asked.push(c);
            true
        })
        .await
        .unwrap();
        assert_eq!(got.len() as u64, declared);
        assert_eq!(
            got.capacity() as u64,
            declared,
            "never past the declared length"
        );
        assert_eq!(asked.first(), Some(&(FIRST_CAPACITY as u64)));
        assert_eq!(asked.last(), Some(&declared));
        // Geometric: a handful of reallocations, each at most twice the last.
        assert!(asked.len() <= 7, "{asked:?}");
        for w in asked.windows(2) {
            assert!(w[1] <= 2 * w[0], "{asked:?}");
        }
    }

    #[tokio::test]
    async fn stops_when_the_budget_refuses_to_grow() {
        let got = read_limited(chunks(10, 4096), None, 1 << 20, |c| c <= 16 * 1024).await;
        assert!(matches!(got, Err(BodyError::OverBudget)));
    }
}
