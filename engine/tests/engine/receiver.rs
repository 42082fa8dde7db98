//! Real local peers for notification tests: an HTTP/1.1 receiver on port 0
//! that records every request and answers per path (a status, or held
//! until the test releases it), and the aiosmtpd SMTP sink.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// How long a test waits for something a peer should do quickly.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the receiver answers on a path.
#[derive(Clone)]
pub enum Answer {
    Status(u16),
    /// Waits until the test calls `notify_one`, then answers 200.
    Hold(Arc<Notify>),
}

struct State {
    requests: Mutex<Vec<Request>>,
    count: watch::Sender<usize>,
    answers: Mutex<HashMap<String, Answer>>,
}

pub struct Receiver {
    pub base: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (count, _) = watch::channel(0);
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            count,
            answers: Mutex::new(HashMap::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Receiver { base, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sets the answer for a path (without query); the default is 200.
    pub fn answer(&self, path: &str, a: Answer) {
        self.state
            .answers
            .lock()
            .expect("lock")
            .insert(path.to_owned(), a);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().expect("lock").clone()
    }

    pub fn on(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }

    /// Waits (bounded) until at least `n` requests arrived in total.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.state.count.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("expected {n} requests, got {:?}", self.requests()))
            .expect("receiver alive");
    }
}

async fn serve(sock: tokio::net::TcpStream, st: Arc<State>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let req = Request {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let answer = st
        .answers
        .lock()
        .expect("lock")
        .get(path.split('?').next().unwrap_or(""))
        .cloned()
        .unwrap_or(Answer::Status(200));
    st.requests.lock().expect("lock").push(req);
    st.count.send_modify(|c| *c += 1);
    let status = match answer {
        Answer::Status(s) => s,
        Answer::Hold(n) => {
            n.notified().await;
            200
        }
    };
    let body = if status < 300 {
        "{\"status\":\"success\"}"
    } else {
        "{\"error\":\"receiver told to fail\"}"
    };
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    w.write_all(resp.as_bytes()).await?;
    w.shutdown().await
}

/// The aiosmtpd sink: a real SMTP server in a child process.
pub struct SmtpSink {
    pub port: u16,
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl SmtpSink {
    /// Starts the sink with the Python that scripts/test prepared
    /// (`CERTCTL_TEST_SMTP_PYTHON`); `None` (skip) when it is not set up
    /// and peers are not required.
    pub async fn start() -> Option<SmtpSink> {
        let python = match std::env::var("CERTCTL_TEST_SMTP_PYTHON") {
            Ok(p) if !p.is_empty() => p,
            _ if super::support::peers_required() => {
                panic!("CERTCTL_TEST_SMTP_PYTHON (a Python with aiosmtpd) is required")
            }
            _ => {
                eprintln!("SKIPPED: CERTCTL_TEST_SMTP_PYTHON is not set (scripts/test sets it)");
                return None;
            }
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_sink.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("SMTP sink ready in time")
            .expect("read")
            .expect("a ready line");
        let v: serde_json::Value = serde_json::from_str(&ready).expect("ready JSON");
        let port = v["ready"].as_u64().expect("port") as u16;
        Some(SmtpSink { port, child, lines })
    }

    /// The next received message (bounded wait).
    pub async fn next_message(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a message in time")
            .expect("read")
            .expect("a message line");
        serde_json::from_str(&line).expect("message JSON")
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}
