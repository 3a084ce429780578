//! Blob uploads: sessions, monolithic and chunked pushes, status, cancel, digests, signed state,
//! cross-repository mounts and resuming on another instance.

mod cancel;
mod chunked;
mod digests;
mod monolithic;
mod mount;
mod resume;
