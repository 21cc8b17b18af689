//! The body type every warden response uses, and small constructors for it.
//!
//! Proxied responses stream the upstream body through the accounting tap; responses warden
//! writes itself (errors, admin API) are a single buffer. Both are boxed into one type so
//! the server can return either without generics leaking everywhere.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response or request body: streamed or buffered, boxed.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: http::StatusCode, value: &impl serde::Serialize) -> http::Response<Body> {
    let bytes = serde_json::to_vec(value).expect("serializing a JSON value cannot fail");
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(bytes))
        .expect("static response parts are valid")
}

/// Why a request body was cut off while it was being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyCut {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body did not arrive within {timeout_ms} ms")]
    TimedOut { timeout_ms: u64 },
    #[error("the request body arrived slower than {min_rate} bytes a second")]
    TooSlow { min_rate: u64 },
}

impl BodyCut {
    /// The cut named anywhere in an error's chain (a forwarded body's cut reaches the
    /// request path wrapped in the upstream client's error).
    pub fn find(mut err: &(dyn std::error::Error + 'static)) -> Option<BodyCut> {
        loop {
            if let Some(cut) = err.downcast_ref::<BodyCut>() {
                return Some(*cut);
            }
            err = err.source()?;
        }
    }
}

/// How long a request body may take to arrive: all of it within `timeout` of the
/// request's arrival and, after [`BodyPace::GRACE`], on average at least `min_rate` bytes a
/// second (0: no minimum). A client that trickles its body holds a concurrency slot
/// and an in-flight permit; these bound how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub started: tokio::time::Instant,
    pub timeout: std::time::Duration,
    pub min_rate: u64,
}

impl BodyPace {
    /// Time a body gets before its average rate is checked.
    pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

    /// When a body that has delivered `received` bytes so far is late, and why.
    pub fn deadline(&self, received: u64) -> (tokio::time::Instant, BodyCut) {
        let whole = self.started + self.timeout;
        let timed_out = BodyCut::TimedOut { timeout_ms: self.timeout.as_millis() as u64 };
        if self.min_rate == 0 {
            return (whole, timed_out);
        }
        let earned = std::time::Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        let by_rate = self.started + Self::GRACE + earned;
        if by_rate < whole {
            (by_rate, BodyCut::TooSlow { min_rate: self.min_rate })
        } else {
            (whole, timed_out)
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body held to a size limit and a [`BodyPace`]: past either it ends with a
    /// [`BodyCut`] error. Used both when warden reads a body and when it streams one to
    /// the upstream, so that no body holds a request forever.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        limit: u64,
        pace: BodyPace,
        received: u64,
        // Armed only when the body has to be waited for.
        timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
        cut: bool,
    }
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, limit: u64, pace: BodyPace) -> GuardedBody<B> {
        GuardedBody { inner, limit, pace, received: 0, timer: None, cut: false }
    }
}

impl<B> http_body::Body for GuardedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.project();
        if *this.cut {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    if *this.received > *this.limit {
                        *this.cut = true;
                        return Poll::Ready(Some(Err(Box::new(BodyCut::TooLarge { limit: *this.limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let (deadline, cut) = this.pace.deadline(*this.received);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        *this.cut = true;
                        Poll::Ready(Some(Err(Box::new(cut))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
