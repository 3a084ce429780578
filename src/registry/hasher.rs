//! A SHA-256 whose state can be saved and restored, so a chunked upload can be continued by another
//! process (or after a restart) without re-reading what was already received.
//!
//! The compression function is the `sha2` crate's (SHA-NI where the CPU has it); this file only keeps
//! the chaining state, the partial block and the length. The saved form is byte-for-byte the one Go's
//! `crypto/sha256` `MarshalBinary` produces, which CNCF distribution stores under
//! `_uploads/<uuid>/hashstates/sha256/<offset>`: either registry can continue the other's upload.

use sha2::digest::generic_array::GenericArray;
use sha2::digest::typenum::U64;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const MAGIC: &[u8; 4] = b"sha\x03";
/// Length of the marshalled state: magic, 8 words, one block, length.
pub const MARSHALLED_LEN: usize = 4 + 32 + 64 + 8;
/// Blocks hashed per call into the compression function.
const BATCH: usize = 256;

type Block = GenericArray<u8, U64>;

/// Resumable SHA-256.
#[derive(Clone)]
pub struct ResumableSha256 {
    h: [u32; 8],
    buf: [u8; 64],
    nbuf: usize,
    len: u64,
    scratch: Vec<Block>,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256 {
            h: H0,
            buf: [0; 64],
            nbuf: 0,
            len: 0,
            scratch: Vec::new(),
        }
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.nbuf > 0 {
            let take = (64 - self.nbuf).min(data.len());
            self.buf[self.nbuf..self.nbuf + take].copy_from_slice(&data[..take]);
            self.nbuf += take;
            data = &data[take..];
            if self.nbuf < 64 {
                return;
            }
            let block = Block::clone_from_slice(&self.buf);
            sha2::compress256(&mut self.h, std::slice::from_ref(&block));
            self.nbuf = 0;
        }
        let full = data.len() / 64 * 64;
        let (blocks, rest) = data.split_at(full);
        for batch in blocks.chunks(64 * BATCH) {
            self.scratch.clear();
            self.scratch
                .extend(batch.chunks_exact(64).map(|c| *Block::from_slice(c)));
            sha2::compress256(&mut self.h, &self.scratch);
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.nbuf = rest.len();
    }

    /// The digest of everything hashed so far (the state itself is left as it is).
    pub fn finish(&self) -> [u8; 32] {
        let mut c = self.clone();
        let bit_len = self.len.wrapping_mul(8);
        let pad_len = if self.nbuf < 56 {
            56 - self.nbuf
        } else {
            120 - self.nbuf
        };
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        c.update(&pad[..pad_len]);
        c.update(&bit_len.to_be_bytes());
        debug_assert_eq!(c.nbuf, 0);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(c.h.iter()) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Saves the state in Go's `MarshalBinary` format.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MARSHALLED_LEN);
        out.extend_from_slice(MAGIC);
        for w in self.h {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.buf[..self.nbuf]);
        out.resize(4 + 32 + 64, 0);
        out.extend_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Restores a state saved by [`marshal`](Self::marshal) or by Go. `None` if it is not one.
    pub fn unmarshal(b: &[u8]) -> Option<ResumableSha256> {
        if b.len() != MARSHALLED_LEN || &b[..4] != MAGIC {
            return None;
        }
        let mut h = [0u32; 8];
        for (i, w) in h.iter_mut().enumerate() {
            let s = 4 + i * 4;
            *w = u32::from_be_bytes(b[s..s + 4].try_into().ok()?);
        }
        let mut buf = [0u8; 64];
        buf.copy_from_slice(&b[36..100]);
        let len = u64::from_be_bytes(b[100..108].try_into().ok()?);
        Some(ResumableSha256 {
            h,
            buf,
            nbuf: (len % 64) as usize,
            len,
            scratch: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn matches_sha2_for_all_split_points() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let want: [u8; 32] = Sha256::digest(&data[..len]).into();
            for split in [0, 1.min(len), len / 2, len] {
                let mut h = ResumableSha256::new();
                h.update(&data[..split]);
                let saved = h.marshal();
                let mut h2 = ResumableSha256::unmarshal(&saved).unwrap();
                h2.update(&data[split..len]);
                assert_eq!(h2.finish(), want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn big_input_in_odd_pieces() {
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 253) as u8).collect();
        let mut h = ResumableSha256::new();
        for piece in data.chunks(65_537) {
            h.update(piece);
        }
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(h.finish(), want);
    }

    #[test]
    fn go_marshal_format() {
        // State of Go's sha256 after writing "abc" (as `MarshalBinary` returns it): the initial
        // chaining words, then "abc" zero-padded to a block, then the length 3.
        let mut h = ResumableSha256::new();
        h.update(b"abc");
        let m = h.marshal();
        assert_eq!(m.len(), 108);
        assert_eq!(&m[..4], b"sha\x03");
        assert_eq!(&m[4..8], &0x6a09e667u32.to_be_bytes());
        assert_eq!(&m[36..39], b"abc");
        assert!(m[39..100].iter().all(|&b| b == 0));
        assert_eq!(&m[100..], &3u64.to_be_bytes());
        assert!(ResumableSha256::unmarshal(&m[..107]).is_none());
        assert!(ResumableSha256::unmarshal(&[0u8; 108]).is_none());
    }
}
