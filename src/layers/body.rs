//! [`Observed`]: a response or request body that counts the bytes passing through and calls a
//! closure exactly once, when the body ends, fails, or is dropped unfinished (the client went away).
//! Layers use it to measure what they cannot see at handler return: the full duration of a
//! download, the bytes sent, and to hold a limiter slot until the last byte is written.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// Called with the bytes seen and whether the body ended cleanly.
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send + 'static>;

/// A body wrapper; see the module docs.
pub struct Observed {
    inner: Body,
    bytes: u64,
    on_done: Option<OnDone>,
}

impl Observed {
    pub fn new(inner: Body, on_done: OnDone) -> Observed {
        Observed {
            inner,
            bytes: 0,
            on_done: Some(on_done),
        }
    }

    /// Wraps `inner` into an axum body.
    pub fn wrap(inner: Body, on_done: impl FnOnce(u64, bool) + Send + 'static) -> Body {
        Body::new(Observed::new(inner, Box::new(on_done)))
    }

    fn finish(&mut self, clean: bool) {
        if let Some(f) = self.on_done.take() {
            f(self.bytes, clean);
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A body never polled but empty (HEAD, 204) ended cleanly; anything else was cut short.
        let clean = self.inner.is_end_stream();
        self.finish(clean);
    }
}
