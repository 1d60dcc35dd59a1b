//! The HTTP/1.1 server loop of `serve`, `gate`, the demo and the benchmark, with the
//! limits a server facing untrusted clients needs:
//!
//! - **request head timeout**: a connection that does not deliver a complete request head
//!   within `header_timeout` (counted from when the server starts waiting for one: a new
//!   connection, or an idle keep-alive connection) is closed;
//! - **body timeout**: a request body must arrive within `body_timeout` of its head, or
//!   the request fails (408 from the API's body extractors, the gate likewise);
//! - **write stall timeout**: a client that stops reading an answer for `body_timeout`
//!   is disconnected;
//! - **connection cap**: at most `max_connections` connections are kept. When a new one
//!   arrives at the cap, the oldest connection with no request in progress (idle, or
//!   still sending its head) is closed to make room; when every connection has a request
//!   in progress, the new connection is closed at once.
//!
//! - **TLS** (optional, [`super::tls`]): the handshake must finish within
//!   `header_timeout` (then the request head has `header_timeout` again), and a
//!   connection still in its handshake counts as one without a request in progress.
//!
//! Each request carries the peer address as [`axum::extract::ConnectInfo`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tower::Service as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connection-level limits of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest wait for a complete request head.
    pub header_timeout: Duration,
    /// Longest time a request body may take to arrive after its head, and longest stall
    /// of a client that does not read its answer.
    pub body_timeout: Duration,
    /// Most connections kept open at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The error a request body yields when it did not arrive within the body timeout.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether an error (or any of its sources) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

pin_project! {
    /// A request body that fails with [`BodyTimeout`] once its deadline has passed.
    pub struct TimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl<B> TimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> TimeoutBody<B> {
        TimeoutBody { inner, deadline: tokio::time::sleep(timeout) }
    }
}

impl<B> http_body::Body for TimeoutBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                ready!(this.deadline.poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream whose writes fail when the peer has not accepted any byte for
/// `stall`: a client that stops reading cannot hold a connection forever.
struct StallIo {
    inner: TcpStream,
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl StallIo {
    fn new(inner: TcpStream, stall: Duration) -> StallIo {
        StallIo { inner, stall, timer: Box::pin(tokio::time::sleep(Duration::ZERO)), armed: false }
    }

    /// Runs a write-side poll under the stall timer.
    fn stalled<T>(&mut self, poll: Poll<std::io::Result<T>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    self.timer.as_mut().reset(tokio::time::Instant::now() + self.stall);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading the answer",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for StallIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.stalled(poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.stalled(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.stalled(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.stalled(poll, cx)
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// Requests of this connection whose answer has not been produced yet.
    in_flight: AtomicUsize,
    /// Told to close (the connection cap needs room).
    evict: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    slots: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        agentsigna_core::sync::lock(&self.slots)
    }

    /// Makes room for a new connection (closing the oldest one without a request in
    /// progress when at the cap); `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Slot>)> {
        let mut slots = self.lock();
        if slots.len() >= max {
            let idle = slots.iter().find(|(_, s)| s.in_flight.load(Ordering::SeqCst) == 0).map(|(id, _)| *id)?;
            if let Some(victim) = slots.remove(&idle) {
                victim.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        slots.insert(id, slot.clone());
        Some((id, slot))
    }

    fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Counts a request as in progress until dropped.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn enter(slot: &Arc<Slot>) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(slot.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` with `limits` in a task until the returned sender fires
/// or is dropped; requests in flight then finish before the task ends.
pub fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    serve_tls(listener, router, limits, None)
}

/// [`serve`], over TLS when `tls` is given.
pub fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<Arc<super::tls::Tls>>,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        let registry = Arc::new(Registry::default());
        let (draining_tx, draining) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut last_warning: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some((id, slot)) = registry.admit(limits.max_connections.max(1)) else {
                            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                                last_warning = Some(Instant::now());
                                tracing::warn!(
                                    max = limits.max_connections,
                                    "every connection has a request in progress: refusing new connections"
                                );
                            }
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let conn = connection(
                            stream,
                            peer,
                            router.clone(),
                            limits,
                            slot,
                            draining.clone(),
                            tls.as_ref().map(|t| t.acceptor()),
                        );
                        let registry = registry.clone();
                        tasks.spawn(async move {
                            conn.await;
                            registry.leave(id);
                        });
                    }
                    // Out of file descriptors and the like: wait instead of spinning.
                    Err(e) if !is_connection_error(&e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(_) => {}
                },
            }
        }
        drop(listener);
        let _ = draining_tx.send(true);
        while tasks.join_next().await.is_some() {}
        Ok(())
    });
    (stop, join)
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Serves one connection until it ends, is evicted, or the server drains; with TLS, after
/// its handshake.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    slot: Arc<Slot>,
    draining: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let io = StallIo::new(stream, limits.body_timeout);
    let Some(acceptor) = tls else {
        return serve_io(io, peer, router, limits, slot, draining).await;
    };
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(io));
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls_io)) => serve_io(tls_io, peer, router, limits, slot, draining).await,
            Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake did not finish within the head timeout"),
        },
        () = slot.evict.notified() => tracing::debug!(%peer, "connection in its handshake closed to make room"),
    }
}

/// Serves HTTP/1.1 on one connection's stream (plain or TLS).
async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    slot: Arc<Slot>,
    mut draining: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let svc_slot = slot.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&svc_slot);
        let mut req = req.map(|b| Body::new(TimeoutBody::new(b, limits.body_timeout)));
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let resp = router.call(req).await;
            drop(guard);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let (mut closing, mut evicted) = (false, false);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
                return;
            }
            _ = draining.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = slot.evict.notified(), if !evicted => {
                evicted = true;
                if slot.in_flight.load(Ordering::SeqCst) == 0 {
                    tracing::debug!(%peer, "idle connection closed to make room");
                    return;
                }
                // A request arrived meanwhile: let it finish, then close.
                if !closing {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn admit_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let r = Registry::default();
        let (a, sa) = r.admit(2).unwrap();
        let (_b, sb) = r.admit(2).unwrap();
        let _busy_a = InFlight::enter(&sa);
        // At the cap: `a` is busy, so `b` (idle) makes room.
        let (_c, sc) = r.admit(2).unwrap();
        assert!(r.lock().contains_key(&a));
        assert_eq!(r.lock().len(), 2);
        let _busy_c = InFlight::enter(&sc);
        assert!(r.admit(2).is_none(), "every connection busy");
        drop(sb);
    }

    #[test]
    fn body_timeout_is_found_in_a_source_chain() {
        let inner: BoxError = Box::new(BodyTimeout);
        let wrapped = axum::Error::new(inner);
        assert!(is_body_timeout(&wrapped));
        assert!(!is_body_timeout(&std::io::Error::other("x")));
    }
}
