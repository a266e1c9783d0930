//! A small HTTP/1.1 server on 127.0.0.1:0 for egress tests: it records every request it receives
//! and answers with a fixed status and body. Keep-alive, Content-Length and chunked request
//! bodies are handled, as a real server would.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long the server takes before answering (a slow upstream).
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub struct TestServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Serves `status` with `answer` to every request.
    pub async fn start(status: u16, answer: &'static str) -> Self {
        Self::scripted(Vec::new(), Reply::new(status, answer)).await
    }

    /// Answers the first requests from `script`, in order, then `then` to every other one.
    pub async fn scripted(script: Vec<Reply>, then: Reply) -> Self {
        let script = Mutex::new(std::collections::VecDeque::from(script));
        Self::with_handler(move |_| {
            script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| then.clone())
        })
        .await
    }

    /// Answers every request with what `handler` makes of it: a small API in a closure.
    pub async fn with_handler(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                socket.set_nodelay(true).ok();
                let log = log.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut reader = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, path) = (
                            parts.next().unwrap_or("").to_owned(),
                            parts.next().unwrap_or("").to_owned(),
                        );
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((n, v)) = h.split_once(':') {
                                headers.push((n.trim().to_owned(), v.trim().to_owned()));
                            }
                        }
                        let find = |name: &str| {
                            headers
                                .iter()
                                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v.clone())
                        };
                        let mut body = Vec::new();
                        if let Some(len) =
                            find("content-length").and_then(|v| v.parse::<usize>().ok())
                        {
                            body.resize(len, 0);
                            if reader.read_exact(&mut body).await.is_err() {
                                return;
                            }
                        } else if find("transfer-encoding")
                            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                        {
                            loop {
                                let mut size = String::new();
                                reader.read_line(&mut size).await.ok();
                                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                                let mut chunk = vec![0; n + 2];
                                if reader.read_exact(&mut chunk).await.is_err() {
                                    return;
                                }
                                if n == 0 {
                                    break;
                                }
                                body.extend_from_slice(&chunk[..n]);
                            }
                        }
                        let seen_now = Seen {
                            method,
                            path,
                            headers,
                            body,
                        };
                        let next = handler(&seen_now);
                        log.lock().unwrap().push(seen_now);
                        tokio::time::sleep(next.delay).await;
                        let extra: String = next
                            .headers
                            .iter()
                            .map(|(n, v)| format!("{n}: {v}\r\n"))
                            .collect();
                        let reply = format!(
                            "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\n\r\n{}",
                            next.status,
                            next.body.len(),
                            next.body
                        );
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TestServer { port, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
