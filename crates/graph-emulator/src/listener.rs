//! The TCP listener: connections the fault layer can cut without an answer
//! (the `drop` fault), by failing every further read and write of the stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Listener whose connections the fault layer can cut without answering.
pub(crate) struct FaultListener {
    pub tcp: TcpListener,
    /// With `--tls`: each connection's handshake before it is served.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A connection, plain or TLS.
enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! inner {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.inner {
            Inner::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Inner::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

pub(crate) struct FaultStream {
    inner: Inner,
    kill: Arc<AtomicBool>,
}

/// Per-connection handle the fault layer gets (as `ConnectInfo`).
#[derive(Clone)]
pub(crate) struct Conn(Arc<AtomicBool>);

impl Conn {
    /// Fail every further read and write of this connection: the client gets no answer.
    pub fn cut(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Listener for FaultListener {
    type Io = FaultStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    let inner = match &self.tls {
                        None => Inner::Plain(s),
                        // A client that never finishes its handshake holds up the next
                        // ones for at most this long (a test server, one client at a time).
                        Some(tls) => {
                            match tokio::time::timeout(Duration::from_secs(10), tls.accept(s)).await
                            {
                                Ok(Ok(t)) => Inner::Tls(Box::new(t)),
                                Ok(Err(e)) => {
                                    tracing::info!("emulator: TLS handshake with {a} failed: {e}");
                                    continue;
                                }
                                Err(_) => {
                                    tracing::info!("emulator: TLS handshake with {a} timed out");
                                    continue;
                                }
                            }
                        }
                    };
                    return (
                        FaultStream {
                            inner,
                            kill: Arc::default(),
                        },
                        a,
                    );
                }
                Err(e) => {
                    tracing::warn!("emulator accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        Conn(stream.io().kill.clone())
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "dropped by fault injection",
    )
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        inner!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        inner!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        inner!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        inner!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        inner!(self, s => s.poll_shutdown(cx))
    }
}
