//! A real webhook receiver: an HTTP server on 127.0.0.1 that records every envelope POSTed to
//! it (headers and parsed JSON) and answers 200, or a chosen status. It can be stopped (listener
//! and open connections closed) and started again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One POST as received.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    envelopes: Mutex<Vec<Envelope>>,
    status: Mutex<u16>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Receiver {
    /// Listening on a fresh port.
    pub async fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: l.local_addr().unwrap(),
            state: Arc::new(State::default()),
            task: None,
        };
        *r.state.status.lock().unwrap() = 200;
        r.serve(l);
        r
    }

    /// A receiver that is down (its port reserved by nobody): start it later with [`resume`].
    pub async fn down() -> Receiver {
        let mut r = Receiver::start().await;
        r.stop().await;
        r
    }

    /// `http://127.0.0.1:<port>/events`.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn serve(&mut self, l: TcpListener) {
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task closes them all.
            let mut conns = JoinSet::new();
            loop {
                let Ok((sock, _)) = l.accept().await else {
                    continue;
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let headers: Vec<(String, String)> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                                })
                                .collect();
                            let ct = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = *state.status.lock().unwrap();
                            if status < 300 {
                                let body: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                state.envelopes.lock().unwrap().push(Envelope {
                                    content_type: ct,
                                    headers,
                                    body,
                                });
                            }
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        }));
    }

    /// Stops listening and closes open connections.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        let l = TcpListener::bind(self.addr).await.unwrap();
        self.serve(l);
    }

    /// Answer every POST with `status` (not recorded unless 2xx).
    pub fn answer(&self, status: u16) {
        *self.state.status.lock().unwrap() = status;
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        self.state.envelopes.lock().unwrap().clone()
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.envelopes()
            .iter()
            .flat_map(|e| e.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}
