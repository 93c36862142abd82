//! Reading the first bytes of a plain connection to tell HTTP/2 with prior knowledge from
//! HTTP/1.1, then handing the connection on with those bytes still unread.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// `IO` whose first reads return bytes already taken from it.
pub struct Rewind<IO> {
    taken: Bytes,
    io: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(io: IO) -> Self {
        Self {
            taken: Bytes::new(),
            io,
        }
    }
}

/// Reads from `io` until its bytes match `prefix` whole or stop matching it (or the client
/// ends); says whether they matched, and gives the connection back with them unread.
pub async fn starts_with<IO>(mut io: IO, prefix: &[u8]) -> io::Result<(bool, Rewind<IO>)>
where
    IO: AsyncRead + Unpin,
{
    let mut taken = BytesMut::with_capacity(prefix.len());
    let matched = loop {
        let seen = taken.len().min(prefix.len());
        if taken[..seen] != prefix[..seen] {
            break false;
        }
        if seen == prefix.len() {
            break true;
        }
        if io.read_buf(&mut taken).await? == 0 {
            break false;
        }
    };
    let taken = taken.freeze();
    Ok((matched, Rewind { taken, io }))
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.taken.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.taken.len().min(buf.remaining());
        buf.put_slice(&self.taken[..n]);
        self.taken.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn sniff(sent: &'static [u8]) -> (bool, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, sent)
            .await
            .unwrap();
        drop(client);
        let (matched, mut io) = starts_with(server, b"PRI *").await.unwrap();
        let mut read = Vec::new();
        io.read_to_end(&mut read).await.unwrap();
        (matched, read)
    }

    #[tokio::test]
    async fn the_bytes_read_to_decide_are_read_again() {
        assert_eq!(sniff(b"PRI * rest").await, (true, b"PRI * rest".to_vec()));
        assert_eq!(
            sniff(b"GET / HTTP/1.1").await,
            (false, b"GET / HTTP/1.1".to_vec())
        );
        assert_eq!(sniff(b"PR").await, (false, b"PR".to_vec()));
        assert_eq!(sniff(b"").await, (false, Vec::new()));
    }
}
