//! A property test over the HTTP response path (issue 9): a server on 127.0.0.1:0 answers each
//! request with a random, often broken, response (any status, up to 120 headers, `Retry-After`
//! as numbers of any size or dates of any year or garbage, content encodings, every framing:
//! exact, short and long `Content-Length`, chunked with random, invalid or huge chunk sizes and
//! trailers, close-delimited) whose body may echo the injected credential. For every case the
//! host must answer (a result or an error, never a panic), within the deadline, and never hand
//! the credential back. The seed is printed on failure; `AIRLOCK_PROPERTY_SEED` replays it and
//! `AIRLOCK_PROPERTY_CASES` sets how many cases run (default 300).

use crate::common::*;
use airlock::InvokeError;
use airlock::egress::Egress;
use airlock::egress::credential::{Credential, Placement};
use airlock::egress::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "prop-SECRET-5e1f0c";

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn retry_after(rng: &mut Rng) -> String {
    let year = 1900 + rng.below(9000);
    rng.pick(&[
        "0".to_owned(),
        u64::MAX.to_string(),
        i64::MAX.to_string(),
        "99999999999999999999999999".to_owned(),
        "-1".to_owned(),
        "1.5".to_owned(),
        " 0 ".to_owned(),
        "soon".to_owned(),
        "Fri, 31 Dec 9999 23:59:59 GMT".to_owned(),
        "Thu, 01 Jan 1970 00:00:00 GMT".to_owned(),
        format!("Mon, 01 Jan {year} 00:00:00 GMT"),
        "Sun, 06 Nov 1994 08:49:37 GMT".to_owned(),
        "Sunday, 06-Nov-94 08:49:37 GMT".to_owned(),
        String::new(),
    ])
    .clone()
}

fn body(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 17 << 20, // past the 16 MiB response cap
        1..=3 => rng.below(256 << 10) as usize,
        _ => rng.below(2048) as usize,
    };
    let mut out: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if rng.chance(50) && len > SECRET.len() {
        // The credential, echoed somewhere inside, maybe cut by a chunk boundary later.
        let at = rng.below((len - SECRET.len()) as u64) as usize;
        out[at..at + SECRET.len()].copy_from_slice(SECRET.as_bytes());
    }
    out
}

/// One random response, as bytes on the wire.
fn response(rng: &mut Rng) -> Vec<u8> {
    let status = *rng.pick(&[
        200u16, 201, 204, 206, 301, 302, 304, 400, 401, 404, 429, 500, 502, 503, 504, 599, 999,
    ]);
    let mut head = format!("HTTP/1.1 {status} Whatever\r\n").into_bytes();
    let headers = if rng.chance(5) {
        90 + rng.below(30)
    } else {
        rng.below(8)
    };
    for i in 0..headers {
        let line = match rng.below(8) {
            0 => format!("retry-after: {}\r\n", retry_after(rng)),
            1 => format!("x-echo: Bearer {SECRET}\r\n"),
            2 => format!(
                "content-encoding: {}\r\n",
                rng.pick(&["gzip", "br", "identity", "x-nope"])
            ),
            3 => "x-obs: \u{00e9}t\u{00e9}\r\n".to_owned(),
            4 => format!("set-cookie: s={}\r\n", rng.next()),
            _ => format!("x-h{i}: {}\r\n", rng.next()),
        };
        head.extend_from_slice(line.as_bytes());
    }
    let payload = body(rng);
    let mut out = head;
    match rng.below(6) {
        // Exact length.
        0 | 1 => {
            out.extend(format!("content-length: {}\r\n\r\n", payload.len()).bytes());
            out.extend(&payload);
        }
        // Says more than it sends (the connection closes early), or less.
        2 => {
            let claimed = if rng.chance(50) {
                payload.len() + 1 + rng.below(1000) as usize
            } else {
                payload.len() / 2
            };
            out.extend(format!("content-length: {claimed}\r\n\r\n").bytes());
            out.extend(&payload);
        }
        // Chunked, with random chunk sizes, sometimes trailers, sometimes broken.
        3 | 4 => {
            out.extend(b"transfer-encoding: chunked\r\n\r\n");
            let mut rest = &payload[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(5000) as usize).min(rest.len());
                let size = match rng.below(40) {
                    0 => "zz".to_owned(),
                    1 => "ffffffffffffffffff".to_owned(),
                    2 => format!("{n:x};ext=1"),
                    _ => format!("{n:x}"),
                };
                out.extend(format!("{size}\r\n").bytes());
                out.extend(&rest[..n]);
                out.extend(b"\r\n");
                rest = &rest[n..];
            }
            if rng.chance(70) {
                out.extend(b"0\r\n");
                if rng.chance(30) {
                    out.extend(format!("x-trailer: {SECRET}\r\n").bytes());
                }
                out.extend(b"\r\n");
            }
        }
        // Delimited by closing the connection.
        _ => {
            out.extend(b"connection: close\r\n\r\n");
            out.extend(&payload);
        }
    }
    out
}

/// Serves a fresh random response per request and closes the connection after it.
async fn hostile_server(seed: u64) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rng = Arc::new(Mutex::new(Rng(seed)));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let rng = rng.clone();
            tokio::spawn(async move {
                // Read the request head (and the small bodies the probe sends).
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = response(&mut rng.lock().unwrap());
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_property_hostile_responses_never_panic_or_leak() {
    let seed = std::env::var("AIRLOCK_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cases: u64 = std::env::var("AIRLOCK_PROPERTY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let port = hostile_server(seed).await;
    let origin = format!("http://127.0.0.1:{port}");
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let mut egress = Egress::from_grants(std::slice::from_ref(&origin)).unwrap();
    egress.credentials = Arc::new(vec![Credential {
        name: "token".into(),
        placement: Placement::Bearer,
        hosts: vec![airlock::egress::Grant::parse(&origin).unwrap()],
        tokens: Default::default(),
        secret: zeroize::Zeroizing::new(SECRET.into()),
    }]);
    // Quick retries, a breaker that never opens: every case reaches the response path.
    egress.resilience = Arc::new(Resilience {
        retry: RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        breaker: BreakerPolicy {
            failures_to_open: u32::MAX,
            cooldown: Duration::from_millis(1),
        },
    });
    let mut hostile = airlock::Environment { egress, ..env() };
    hostile.limits.deadline = Duration::from_secs(3);
    let who = caller("acme", "c1");
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let (mut answered, mut failed) = (0, 0);
    let secret_hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    for case in 0..cases {
        let (operation, method) = *rng.pick(&[("fetch", "GET"), ("send", "POST"), ("send", "PUT")]);
        // Hex: a secret the guest was handed would show through any scrubbing of its output.
        let params = json!({
            "url": format!("{origin}/case/{case}"),
            "method": method,
            "body": "{}",
            "hex": true,
        });
        let started = std::time::Instant::now();
        let result = invoke(&executor, &probe, &who, &hostile, operation, params).await;
        let text = match &result {
            Ok(v) => {
                answered += 1;
                v.to_string()
            }
            Err(e) => {
                failed += 1;
                e.to_string()
            }
        };
        let context = || format!("seed {seed}, case {case}: {}", &text[..text.len().min(300)]);
        assert!(
            !matches!(result, Err(InvokeError::HostPanic { .. })),
            "the host panicked: {}",
            context()
        );
        assert!(
            !text.contains(SECRET),
            "the credential came back: {}",
            context()
        );
        assert!(
            !text.contains(&secret_hex),
            "the guest was handed the credential: {}",
            context()
        );
        assert!(
            started.elapsed() < hostile.limits.deadline + Duration::from_secs(1),
            "past the deadline ({:?}): {}",
            started.elapsed(),
            context()
        );
    }
    assert!(
        answered > 0 && failed > 0,
        "seed {seed}: {answered} answered, {failed} failed"
    );
    // The host still serves an ordinary request afterwards.
    let ok = crate::http_server::TestServer::start(200, "fine").await;
    let plain = airlock::Environment {
        egress: Egress::from_grants(&[format!("http://127.0.0.1:{}", ok.port)]).unwrap(),
        ..env()
    };
    let fine = invoke(
        &executor,
        &probe,
        &who,
        &plain,
        "fetch",
        json!({"url": format!("http://127.0.0.1:{}/", ok.port)}),
    )
    .await
    .unwrap();
    assert_eq!(fine["status"], 200);
}
