//! A fake model provider on 127.0.0.1 (port 0) that speaks HTTP/1.1 at the byte level, so it
//! can answer exactly as a real provider would — or not: errors with `Retry-After`, slow
//! answers, garbage, bodies cut short. It answers from a script, one entry per request, and
//! logs every request it received with what it answered: the tests' expected values come from
//! that log.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Announce the whole body but send only this many bytes, then close.
    pub truncate_to: Option<usize>,
    /// Server-sent events: the body goes out one event at a time, without a length.
    pub stream: bool,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
            truncate_to: None,
            stream: false,
        }
    }
    /// A stream of server-sent events, each `(event name, data)`; an empty name writes a
    /// `data:` line only (OpenAI's format). Data that is a JSON string is written as is
    /// (`[DONE]`).
    pub fn sse(events: &[(&str, serde_json::Value)]) -> Reply {
        let mut body = String::new();
        for (name, data) in events {
            if !name.is_empty() {
                body.push_str(&format!("event: {name}\n"));
            }
            match data {
                serde_json::Value::String(text) => body.push_str(&format!("data: {text}\n\n")),
                other => body.push_str(&format!("data: {other}\n\n")),
            }
        }
        Reply {
            status: 200,
            headers: vec![],
            body: body.into_bytes(),
            delay: Duration::ZERO,
            truncate_to: None,
            stream: true,
        }
    }
    pub fn raw(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.to_vec(),
            delay: Duration::ZERO,
            truncate_to: None,
            stream: false,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
    pub fn truncated(mut self, bytes: usize) -> Reply {
        self.truncate_to = Some(bytes);
        self
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// What it answered.
    pub reply_status: u16,
    pub reply_body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The reply body as JSON, when it is JSON.
    pub fn reply_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.reply_body).ok()
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// Answered when the script is used up (benchmarks); else a 500.
    repeat: Option<Reply>,
    log: Vec<Received>,
    /// Benchmarks do not keep a log.
    keep_log: bool,
    /// Requests being answered now, and the most at once.
    in_flight: usize,
    max_in_flight: usize,
}

/// The running fake; it stops when dropped.
pub struct FakeProvider {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Start on 127.0.0.1, port 0, answering `script` in order (then 500s).
    pub async fn start(script: Vec<Reply>) -> FakeProvider {
        FakeProvider::start_with(script, None).await
    }

    /// Answer `reply` to every request, keeping no log (benchmarks).
    pub async fn repeating(reply: Reply) -> FakeProvider {
        FakeProvider::start_with(vec![], Some(reply)).await
    }

    async fn start_with(script: Vec<Reply>, repeat: Option<Reply>) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let keep_log = repeat.is_none();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            repeat,
            log: vec![],
            keep_log,
            in_flight: 0,
            max_in_flight: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        FakeProvider {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Add `replies` to the end of the script (a script that names the fake's own address).
    pub fn script(&self, replies: Vec<Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().log.clone()
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }
}

async fn serve(mut stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..]).unwrap_or(serde_json::Value::Null);
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = state
            .script
            .pop_front()
            .or_else(|| state.repeat.clone())
            .unwrap_or_else(|| Reply::raw(500, b"{\"error\":{\"message\":\"script exhausted\"}}"));
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        if state.keep_log {
            state.log.push(Received {
                path,
                headers,
                body,
                at: Instant::now(),
                reply_status: reply.status,
                reply_body: reply.body.clone(),
            });
        }
        reply
    };
    let written = write_reply(&mut stream, reply).await;
    state.lock().unwrap().in_flight -= 1;
    written
}

async fn write_reply(stream: &mut tokio::net::TcpStream, reply: Reply) -> std::io::Result<()> {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut out = if reply.stream {
        format!(
            "HTTP/1.1 {} X\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n",
            reply.status
        )
    } else {
        format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            reply.status,
            reply.body.len()
        )
    };
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    let body = match reply.truncate_to {
        Some(n) => &reply.body[..n.min(reply.body.len())],
        None => &reply.body[..],
    };
    if reply.stream {
        // One event per write, as a provider streams them.
        for event in body.split_inclusive(|b| *b == b'\n') {
            stream.write_all(event).await?;
            stream.flush().await?;
        }
    } else {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}
