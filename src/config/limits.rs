//! The connection limits of `http.*` as the server applies them (`Config::connection_limits`).

use std::time::Duration;

/// Limits of the accept loop and of each connection; `None` means no limit (or, for
/// `max_connections`, one derived from the open-file limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `http.headerreadtimeout`: a request head must arrive within this (HTTP/1).
    pub header_read_timeout: Option<Duration>,
    /// `http.idletimeout`: a connection with no request in flight closes after this.
    pub idle_timeout: Option<Duration>,
    /// `http.bodytimeout`: a request body that sends nothing for this long fails.
    pub body_timeout: Option<Duration>,
    /// `http.maxconnections`: connections served at once.
    pub max_connections: Option<usize>,
    /// `http.maxheaderbytes`: header bytes answered (more: 431).
    pub max_header_bytes: usize,
    /// `http.http2.maxconcurrentstreams`.
    pub h2_max_concurrent_streams: u32,
    /// `http.http2.maxheaderlistsize`.
    pub h2_max_header_list_size: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        crate::config::Config::default().connection_limits()
    }
}
