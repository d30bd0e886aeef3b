//! An HTTP-aware TCP proxy that injects faults the real registry cannot produce.
//!
//! It sits in front of a plain-HTTP registry and rewrites every request and response to
//! `Connection: close`, so each request uses its own connection and a fault touches exactly
//! one request. Rules match a substring of the request target (path and query) and optionally
//! the method, and apply once, a set number of times, or always.
//!
//! Body offsets count the bytes after the response headers as the registry sent them. The
//! registry sends blobs and manifests with `Content-Length`, so these are the payload bytes;
//! for a chunked response they would include the chunk framing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{block_on, runtime, Registry};

/// Largest request or response head the proxy reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long the proxy keeps reading from a client after its response is complete, so that
/// unread request bytes do not turn the close into a connection reset.
const LINGER: Duration = Duration::from_secs(2);

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the status, headers and the first `n` body bytes, then close the connection.
    /// A body of `n` bytes or fewer passes whole.
    CutAfter(u64),
    /// Send `429 Too Many Requests` with `Retry-After: 1` without contacting the registry.
    TooManyRequests,
    /// Send `503 Service Unavailable` without contacting the registry.
    ServiceUnavailable,
    /// Send `413 Payload Too Large` without contacting the registry, as a proxy in front of a
    /// registry does when it limits request bodies.
    PayloadTooLarge,
    /// Forward the response with the body byte at this offset XORed with 0xFF. A body shorter
    /// than offset + 1 passes unchanged.
    FlipByte(u64),
    /// Forward the status, headers and the first `after` body bytes, pause for `duration`,
    /// then forward the rest.
    Stall { after: u64, duration: Duration },
    /// Wait `duration` before forwarding the request, so no response byte arrives until then.
    Delay(Duration),
}

/// Which requests a fault applies to and how often.
#[derive(Clone, Debug)]
pub struct FaultRule {
    path_part: String,
    method: Option<String>,
    fault: Fault,
    /// Applications left; `None` means unlimited.
    remaining: Option<u32>,
}

impl FaultRule {
    /// Creates a rule that applies `fault` once to the next request whose target contains `path_part`.
    pub fn new(path_part: &str, fault: Fault) -> FaultRule {
        FaultRule {
            path_part: path_part.to_string(),
            method: None,
            fault,
            remaining: Some(1),
        }
    }

    /// Restricts the rule to one method, such as `GET` (so a `HEAD` does not use it up).
    pub fn method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Applies the fault to the next `count` matching requests.
    pub fn times(mut self, count: u32) -> FaultRule {
        self.remaining = Some(count);
        self
    }

    /// Applies the fault to every matching request.
    pub fn always(mut self) -> FaultRule {
        self.remaining = None;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.remaining != Some(0)
            && target.contains(&self.path_part)
            && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// Handle of a rule added to a [`FaultProxy`], for [`FaultProxy::hits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultId(usize);

/// One request that passed through the proxy.
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    pub method: String,
    /// Request target: path and query string.
    pub path: String,
    /// The `Range` header, if the client sent one.
    pub range: Option<String>,
    /// The rule that applied to this request, if any.
    pub fault: Option<FaultId>,
    /// Status sent to the client. It is `None` until the response headers are sent, and stays
    /// `None` when the connection fails before that.
    pub status: Option<u16>,
}

struct RuleState {
    rule: FaultRule,
    hits: u32,
}

#[derive(Default)]
struct ProxyState {
    rules: Mutex<Vec<RuleState>>,
    requests: Mutex<Vec<ProxiedRequest>>,
}

impl ProxyState {
    /// Finds the first rule that matches, uses up one application, and returns it.
    fn take_fault(&self, method: &str, target: &str) -> Option<(FaultId, Fault)> {
        let mut rules = self.rules.lock().unwrap();
        let (position, state) = rules
            .iter_mut()
            .enumerate()
            .find(|(_, state)| state.rule.matches(method, target))?;
        state.hits += 1;
        if let Some(remaining) = &mut state.rule.remaining {
            *remaining -= 1;
        }
        Some((FaultId(position), state.rule.fault.clone()))
    }

    fn set_status(&self, request: usize, status: u16) {
        self.requests.lock().unwrap()[request].status = Some(status);
    }
}

/// A running fault proxy on `127.0.0.1:<port>`. Stops on Drop.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    port: u16,
    shutdown: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy in front of a plain-HTTP registry.
    pub fn start(registry: &Registry) -> FaultProxy {
        assert!(
            registry.pki().is_none(),
            "the fault proxy forwards plain HTTP: use Registry::start_plain"
        );
        FaultProxy::start_for(&registry.host())
    }

    /// Starts a proxy in front of any plain-HTTP server at `upstream` (`host:port`).
    pub fn start_for(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|error| panic!("invalid upstream address {upstream:?}: {error}"));
        let state = Arc::new(ProxyState::default());
        let shutdown = CancellationToken::new();
        let listener = block_on(async {
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("failed to bind the fault proxy to 127.0.0.1")
        });
        let port = listener.local_addr().unwrap().port();
        runtime().spawn(accept_loop(
            listener,
            upstream,
            Arc::clone(&state),
            shutdown.clone(),
        ));
        FaultProxy {
            state,
            port,
            shutdown,
        }
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference through the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Adds a rule after the existing ones. The first matching rule with applications left wins.
    pub fn add(&self, rule: FaultRule) -> FaultId {
        let mut rules = self.state.rules.lock().unwrap();
        rules.push(RuleState { rule, hits: 0 });
        FaultId(rules.len() - 1)
    }

    /// Applies `fault` once to the next request whose target contains `path_part`.
    pub fn inject(&self, path_part: &str, fault: Fault) -> FaultId {
        self.add(FaultRule::new(path_part, fault))
    }

    /// Returns how many requests the rule has applied to.
    pub fn hits(&self, id: FaultId) -> u32 {
        self.state.rules.lock().unwrap()[id.0].hits
    }

    /// Disables every rule. Their hit counts stay readable.
    pub fn clear_faults(&self) {
        for state in self.state.rules.lock().unwrap().iter_mut() {
            state.rule.remaining = Some(0);
        }
    }

    /// Returns every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Counts requests with this method whose target contains `path_part`.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.method == method && request.path.contains(path_part))
            .count()
    }

    /// `Range` headers of requests whose target contains `path_part`, in arrival order.
    pub fn ranges(&self, path_part: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|request| request.path.contains(path_part))
            .filter_map(|request| request.range)
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<ProxyState>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((client, _)) = accepted else { continue };
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                // An I/O error closes only this connection, and the client gets that close.
                _ = handle(client, upstream, state) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// A parsed request or response head.
struct Head {
    /// Request line or status line, without CRLF.
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Serializes the head with hop-by-hop connection headers replaced by `Connection: close`.
    fn to_bytes_with_close(&self) -> Vec<u8> {
        let mut text = format!("{}\r\n", self.first_line);
        for (name, value) in &self.headers {
            let hop_by_hop = ["connection", "keep-alive", "proxy-connection"]
                .iter()
                .any(|hop| name.eq_ignore_ascii_case(hop));
            if !hop_by_hop {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        text.push_str("Connection: close\r\n\r\n");
        text.into_bytes()
    }
}

/// Reads up to the end of an HTTP head. Returns the raw head and the bytes read after it.
async fn read_head<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(std::io::Error::other("HTTP head larger than 64 KiB"));
        }
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn collect_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|header| {
            let value = String::from_utf8_lossy(header.value).into_owned();
            (header.name.to_string(), value)
        })
        .collect()
}

fn parse_request(raw: &[u8]) -> std::io::Result<(String, String, Head)> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(std::io::Error::other("invalid HTTP request head")),
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default().to_string();
    let head = Head {
        first_line: format!("{method} {target} HTTP/1.1"),
        headers: collect_headers(request.headers),
    };
    Ok((method, target, head))
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Head)> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(std::io::Error::other("invalid HTTP response head")),
    }
    let code = response.code.unwrap_or_default();
    let head = Head {
        first_line: format!("HTTP/1.1 {code} {}", response.reason.unwrap_or_default()),
        headers: collect_headers(response.headers),
    };
    Ok((code, head))
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<ProxyState>,
) -> std::io::Result<()> {
    let (raw_head, request_rest) = read_head(&mut client).await?;
    let (method, target, request_head) = parse_request(&raw_head)?;
    let fault = state.take_fault(&method, &target);
    let request_index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(ProxiedRequest {
            method: method.clone(),
            path: target.clone(),
            range: request_head.header("range").map(str::to_string),
            fault: fault.as_ref().map(|(id, _)| *id),
            status: None,
        });
        requests.len() - 1
    };
    let fault = fault.map(|(_, fault)| fault);

    let (mut client_read, mut client_write) = client.into_split();
    match &fault {
        Some(Fault::TooManyRequests) => {
            let extra = "Retry-After: 1\r\n";
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests (injected by the fault proxy)"}]}"#;
            answer(&mut client_write, "429 Too Many Requests", extra, body).await?;
            state.set_status(request_index, 429);
            return linger(client_read, client_write).await;
        }
        Some(Fault::ServiceUnavailable) => {
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable (injected by the fault proxy)"}]}"#;
            answer(&mut client_write, "503 Service Unavailable", "", body).await?;
            state.set_status(request_index, 503);
            return linger(client_read, client_write).await;
        }
        Some(Fault::PayloadTooLarge) => {
            answer(&mut client_write, "413 Payload Too Large", "", "request body too large (injected by the fault proxy)").await?;
            state.set_status(request_index, 413);
            return linger(client_read, client_write).await;
        }
        Some(Fault::Delay(duration)) => tokio::time::sleep(*duration).await,
        _ => {}
    }

    let registry = TcpStream::connect(upstream).await?;
    let (mut registry_read, mut registry_write) = registry.into_split();
    registry_write
        .write_all(&request_head.to_bytes_with_close())
        .await?;
    registry_write.write_all(&request_rest).await?;
    // The request body streams on while the response comes back. The write side toward the
    // registry is never shut down, because Go's net/http server cancels the request context
    // when it reads EOF from the client (connReader.handleReadError in server.go).
    let request_body = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut registry_write).await;
        (client_read, registry_write)
    });

    let (raw_response, body_start) = read_head(&mut registry_read).await?;
    let (status, response_head) = parse_response(&raw_response)?;
    client_write
        .write_all(&response_head.to_bytes_with_close())
        .await?;
    state.set_status(request_index, status);

    let mut body = BodyForwarder {
        fault,
        offset: 0,
        stalled: false,
    };
    let mut chunk = body_start;
    loop {
        if !body.forward(&mut client_write, &mut chunk).await? {
            // The fault cut the connection: drop both sides now.
            request_body.abort();
            return Ok(());
        }
        chunk.resize(64 * 1024, 0);
        let read = registry_read.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        chunk.truncate(read);
    }

    client_write.shutdown().await?;
    // Give the client time to close its side, so the close is orderly.
    let _ = tokio::time::timeout(LINGER, request_body).await;
    Ok(())
}

/// Applies body faults while forwarding the response body chunk by chunk.
struct BodyForwarder {
    fault: Option<Fault>,
    /// Body bytes forwarded so far.
    offset: u64,
    stalled: bool,
}

impl BodyForwarder {
    /// Forwards `chunk` (which may be changed in place). Returns false when the connection
    /// must be cut.
    async fn forward(
        &mut self,
        client: &mut OwnedWriteHalf,
        chunk: &mut [u8],
    ) -> std::io::Result<bool> {
        let start = self.offset;
        let end = start + chunk.len() as u64;
        match self.fault {
            Some(Fault::CutAfter(limit)) if end >= limit => {
                let keep = (limit - start.min(limit)) as usize;
                client.write_all(&chunk[..keep]).await?;
                client.flush().await?;
                return Ok(false);
            }
            Some(Fault::FlipByte(position)) if (start..end).contains(&position) => {
                chunk[(position - start) as usize] ^= 0xFF;
            }
            Some(Fault::Stall { after, duration }) if !self.stalled && end >= after => {
                let split = (after - start.min(after)) as usize;
                client.write_all(&chunk[..split]).await?;
                client.flush().await?;
                tokio::time::sleep(duration).await;
                self.stalled = true;
                client.write_all(&chunk[split..]).await?;
                self.offset = end;
                return Ok(true);
            }
            _ => {}
        }
        client.write_all(chunk).await?;
        self.offset = end;
        Ok(true)
    }
}

/// Sends a complete JSON response made up by the proxy.
async fn answer(
    client: &mut OwnedWriteHalf,
    status: &str,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await
}

/// Closes the write side, then reads and discards what the client still sends (an upload body)
/// until it closes or [`LINGER`] passes.
async fn linger(
    mut client_read: OwnedReadHalf,
    mut client_write: OwnedWriteHalf,
) -> std::io::Result<()> {
    client_write.shutdown().await?;
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut client_read, &mut sink)).await;
    Ok(())
}
