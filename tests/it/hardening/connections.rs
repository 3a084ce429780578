//! Connection limits over raw sockets: slowloris heads and silent sockets are closed by the header
//! read timeout, idle keep-alive connections by the idle timeout, a stalled upload body by the
//! body timeout (the upload keeps what arrived and is resumed), the connection cap queues the
//! excess in the backlog, 1,000 idle sockets and 600 stalled uploads do not lock a normal client
//! out, and HTTP/2 announces
//! its stream and header-list limits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{closed_within, read_answer};
use crate::harness::*;

#[tokio::test]
async fn slowloris_and_silent_sockets_are_closed_by_the_header_read_timeout() {
    let s = TestServer::builder()
        .http("headerreadtimeout: 1s\nidletimeout: 60s")
        .start()
        .await;
    let mut socks = Vec::new();
    for i in 0..60 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        match i % 3 {
            // Half a head, then nothing.
            0 => c
                .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap(),
            // Less than the HTTP/2 preface (protocol detection waits for more).
            1 => c.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
            // Nothing at all.
            _ => {}
        }
        socks.push(c);
    }
    // One more that trickles a byte every 200 ms: the deadline is absolute, not per byte.
    let mut trickle = TcpStream::connect(s.addr).await.unwrap();
    let head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for (i, b) in head.iter().enumerate() {
        if trickle.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(i < 30, "the trickling head was not cut");
    }
    assert!(closed || closed_within(&mut trickle, 2.0).await);
    for (i, c) in socks.iter_mut().enumerate() {
        assert!(closed_within(c, 3.0).await, "socket {i} still open");
    }
    assert_eq!(s.get("/v2/").await.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_idle_timeout() {
    let s = TestServer::builder()
        .http("headerreadtimeout: 30s\nidletimeout: 1s")
        .start()
        .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut c, false).await.status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let t = std::time::Instant::now();
    assert!(
        closed_within(&mut c, 5.0).await,
        "idle connection kept open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
}

#[tokio::test]
async fn a_stalled_upload_body_is_cut_and_the_upload_resumes() {
    let s = TestServer::builder().http("bodytimeout: 1s").start().await;
    let data = bytes(100_000, 7);
    let loc = s.start_upload("app").await;
    let path = &loc[loc.find("/v2/").unwrap()..];
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&data[..40_000]).await.unwrap();
    // Then nothing: the server gives up on the body within the timeout (plus slack).
    assert!(closed_within(&mut c, 5.0).await, "stalled body kept open");
    let offset = eventually(5, "the received bytes are stored", || async {
        let r = header(&s.get(&loc).await, "range");
        (r == "0-39999").then_some(40_000u64)
    })
    .await;
    let resp = s.patch_chunk(&loc, offset, &data[offset as usize..]).await;
    assert_eq!(resp.status(), 202);
    let loc = header(&resp, "location");
    let resp = s.finish_upload(&loc, &sha256(&data), None).await;
    assert_eq!(resp.status(), 201);
    let got = s.get(&format!("/v2/app/blobs/{}", sha256(&data))).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn the_connection_cap_queues_the_excess_in_the_backlog() {
    let s = TestServer::builder()
        .http("maxconnections: 8\nheaderreadtimeout: 30s")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        // A complete request first, so each of them surely holds a slot.
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut c, false).await.status, 200);
        held.push(c);
    }
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    extra
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), extra.read(&mut b))
            .await
            .is_err(),
        "a ninth connection was served beyond maxconnections: 8"
    );
    drop(held.pop());
    assert_eq!(read_answer(&mut extra, false).await.status, 200);
}

#[tokio::test]
async fn a_normal_client_is_served_while_1000_idle_sockets_are_held() {
    let s = TestServer::start().await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Some of them with half a head.
    for c in idle.iter_mut().step_by(2) {
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost").await.unwrap();
    }
    let digest = s.push_blob("app", b"while held").await;
    let resp = s.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"while held");
    drop(idle);
}

/// More stalled uploads than the blocking thread pool has threads (512): each used to hold one
/// thread for the life of its body (its hasher), and every file operation of every other request
/// waited behind them until the body timeout. Now a normal push and pull is served meanwhile.
#[tokio::test]
async fn a_normal_push_is_served_while_600_uploads_stall() {
    let s = TestServer::builder()
        .http("bodytimeout: 120s")
        .start()
        .await;
    let mut locations = Vec::new();
    for _ in 0..600 {
        locations.push(s.start_upload("slow").await);
    }
    let mut stalled = Vec::new();
    for loc in &locations {
        let path = &loc[loc.find("/v2/").unwrap()..];
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(
            format!(
                "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        c.write_all(&[7u8; 1024]).await.unwrap();
        stalled.push(c);
    }
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        let digest = s.push_blob("app", b"while 600 uploads stall").await;
        let resp = s.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap()
    })
    .await
    .expect("a push and pull waited behind 600 stalled uploads");
    assert_eq!(served.as_ref(), b"while 600 uploads stall");
    drop(stalled);
}

/// The server's first SETTINGS frame on a cleartext HTTP/2 connection, as (id, value) pairs.
async fn h2_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    c.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        c.read_exact(&mut payload).await.unwrap();
        if head[3] == 4 && head[4] & 1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|e| {
                    (
                        u16::from_be_bytes([e[0], e[1]]),
                        u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                    )
                })
                .collect();
        }
    }
}

#[tokio::test]
async fn http2_announces_its_stream_and_header_list_limits() {
    let s = TestServer::start().await;
    let settings = h2_settings(s.addr).await;
    assert!(settings.contains(&(0x3, 100)), "{settings:?}");
    assert!(settings.contains(&(0x6, 64 << 10)), "{settings:?}");
    let s = TestServer::builder()
        .http("http2:\n  maxconcurrentstreams: 7\n  maxheaderlistsize: 8192")
        .start()
        .await;
    let settings = h2_settings(s.addr).await;
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
    assert!(settings.contains(&(0x6, 8192)), "{settings:?}");
}
