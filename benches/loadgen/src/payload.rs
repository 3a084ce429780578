//! Payloads: pseudo-random bytes generated once (xorshift, several GiB/s) with their digests
//! computed before any timing starts, so payload generation never limits a measurement.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// A blob to push: its bytes (a distinct `head`, then a `tail` that payloads of one scenario may
/// share, so 64 distinct 100 MiB blobs do not take 6.4 GiB of the load generator's memory) and
/// `sha256:<hex>` digest.
#[derive(Clone)]
pub struct Payload {
    pub head: Bytes,
    pub tail: Bytes,
    pub digest: String,
}

/// Distinct bytes at the start of each payload that shares its tail.
const SHARED_HEAD: usize = 64 << 10;

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
        Payload {
            head: data,
            tail: Bytes::new(),
            digest,
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Bytes `[a, b)` as the pieces to send.
    pub fn range(&self, a: usize, b: usize) -> Vec<Bytes> {
        let h = self.head.len();
        let mut v = Vec::new();
        if a < h {
            v.push(self.head.slice(a..b.min(h)));
        }
        if b > h {
            v.push(self.tail.slice(a.max(h) - h..b - h));
        }
        v
    }

    /// `n` payloads of `size` bytes with distinct 64 KiB heads and one shared random tail:
    /// distinct blobs (digests) for little memory.
    pub fn many_shared(n: usize, size: usize, seed: u64) -> Vec<Payload> {
        let head = SHARED_HEAD.min(size);
        let tail = Payload::random(size - head, seed).head;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let tail = tail.clone();
                    s.spawn(move || {
                        let head = Payload::random(head, seed + 1 + i as u64).head;
                        let mut h = Sha256::new();
                        h.update(&head);
                        h.update(&tail);
                        Payload {
                            head,
                            tail,
                            digest: format!("sha256:{}", hex(&h.finalize())),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("payload thread"))
                .collect()
        })
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
