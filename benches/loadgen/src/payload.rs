//! Payloads: pseudo-random bytes generated once (xorshift, several GiB/s) with their digests
//! computed before any timing starts, so payload generation never limits a measurement.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// A blob to push: its bytes and `sha256:<hex>` digest.
#[derive(Clone)]
pub struct Payload {
    pub data: Bytes,
    pub digest: String,
}

impl Payload {
    /// `size` bytes of pseudo-random data from `seed`.
    pub fn random(size: usize, seed: u64) -> Payload {
        let mut data = vec![0u8; size];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Payload::from_bytes(Bytes::from(data))
    }

    pub fn from_bytes(data: Bytes) -> Payload {
        let digest = format!("sha256:{}", hex(&Sha256::digest(&data)));
        Payload { data, digest }
    }

    /// `n` distinct payloads of `size` bytes, generated and hashed on all cores.
    pub fn many(n: usize, size: usize, seed: u64) -> Vec<Payload> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| s.spawn(move || Payload::random(size, seed + i as u64)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("payload thread"))
                .collect()
        })
    }
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}
