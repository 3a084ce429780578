//! `loadgen relay`: a TCP relay on loopback that delays every byte the target sends back by a
//! fixed time, so that a store on loopback answers as one a few milliseconds away would: each
//! request/answer exchange costs one delay more, whatever else is in flight (a delay line, not a
//! rate cap; the client-to-target direction is not delayed). In Rust, and without a cap, so that
//! the relay itself costs little CPU beside the store and the registry on the same cores.
//!
//! Depends on tokio only. Binds 127.0.0.1; runs until killed. At most 64 chunks (16 MiB) per
//! connection wait in the line; a reader that falls behind back-pressures the target.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const CHUNK: usize = 256 * 1024;

pub async fn run(listen: u16, target: String, delay: Duration) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", listen))
        .await
        .with_context(|| format!("binding 127.0.0.1:{listen}"))?;
    eprintln!("relay 127.0.0.1:{listen} -> {target}, answers delayed {delay:?}");
    loop {
        let (client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_r, client_w) = client.into_split();
            let (up_r, up_w) = upstream.into_split();
            tokio::join!(forward(client_r, up_w), delayed(up_r, client_w, delay));
        });
    }
}

/// Client to target, undelayed, in reads of up to 256 KiB (`tokio::io::copy` uses 8 KiB).
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, bytes::Bytes)>(64);
    let read = async move {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    if tx.send((Instant::now() + delay, chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
