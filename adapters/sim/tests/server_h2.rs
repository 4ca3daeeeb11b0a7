//! The loopback server over HTTP/2: full-duplex `Run` in cleartext (h2c prior knowledge) and
//! over TLS, unary calls, faults as real HTTP/2 frames, and request-body flow control.
#![cfg(feature = "server")]

mod common;
mod server_support;

use bytes::Bytes;
use common::{BlobStore, ClientRun, Policy};
use cursorpool_proto::aiserver_v1::GetServerConfigResponse;
use cursorpool_sim::model::{Fault, FaultRule, FaultRuns, SimConfig};
use cursorpool_sim::server::{self, ServerConfig, SimHandle};
use h2::Reason;
use prost::Message;
use server_support::{self as net, H2Client, bounded};
use tokio::net::TcpStream;

async fn start(config: ServerConfig) -> (SimHandle, String) {
    let sim = server::spawn(config).await.expect("server starts");
    let token = sim
        .access_token("default")
        .expect("token for the default account");
    (sim, token)
}

fn with_fault(fault: Fault) -> ServerConfig {
    ServerConfig::new(SimConfig {
        faults: vec![FaultRule {
            account: None,
            runs: FaultRuns::All,
            fault,
        }],
        ..SimConfig::default()
    })
}

#[tokio::test]
async fn text_turn_over_h2c_run_streams_answer_turn_end_and_checkpoint() {
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let mut client = net::h2c_connect(sim.addr()).await;
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let first = net::new_turn("hello over h2c");
        net::h2_run(&mut client, &token, &first, &mut run, &mut store)
            .await
            .expect("run completes");
        assert!(!run.t.text.is_empty(), "an answer was streamed");
        assert!(run.t.turn_ended.is_some(), "turn_ended received");
        assert!(
            run.t.last_checkpoint().is_some(),
            "a checkpoint was received"
        );
        let end = run.t.end.as_ref().expect("end-stream received");
        assert!(end.error.is_none(), "turn succeeded: {end:?}");
    })
    .await;
    let counters = sim.counters();
    assert_eq!(counters.total.runs, 1);
    assert_eq!(counters.total.turns_completed, 1);
    assert_eq!(counters.total.runs_by_rpc.get("Run"), Some(&1));
    assert_eq!(counters.streams.get("/agent.v1.AgentService/RunSSE"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn paced_turn_is_driven_to_its_end_by_the_timer_task() {
    // Every delta waits for a timer: the turn only ends if the server sleeps until the
    // model's deadlines and fires them.
    let config = ServerConfig::new(SimConfig {
        chunk_chars: 2,
        token_interval: std::time::Duration::from_millis(2),
        heartbeat_interval: std::time::Duration::from_millis(10),
        ..SimConfig::default()
    });
    let (sim, token) = start(config).await;
    bounded(async {
        let mut client = net::h2c_connect(sim.addr()).await;
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let first = net::new_turn("pace me");
        net::h2_run(&mut client, &token, &first, &mut run, &mut store)
            .await
            .expect("run completes");
        assert!(run.t.turn_ended.is_some());
        assert!(run.t.end.as_ref().is_some_and(|e| e.error.is_none()));
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn text_turn_over_tls_h2_trusting_the_generated_certificate() {
    let config = ServerConfig {
        tls: true,
        ..ServerConfig::default()
    };
    let (sim, token) = start(config).await;
    assert!(sim.base_url().starts_with("https://"));
    let pem = sim
        .cert_pem()
        .expect("TLS server has a certificate")
        .to_owned();
    bounded(async {
        let connector = net::tls_connector(&pem, &[b"h2", b"http/1.1"]);
        let tcp = TcpStream::connect(sim.addr()).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut client = net::h2_handshake(tls).await;
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let first = net::new_turn("hello over TLS");
        net::h2_run(&mut client, &token, &first, &mut run, &mut store)
            .await
            .expect("run completes");
        assert!(run.t.turn_ended.is_some());
        assert!(run.t.end.as_ref().is_some_and(|e| e.error.is_none()));

        // The same certificate serves HTTP/1.1 when that is what ALPN picks.
        let connector = net::tls_connector(&pem, &[b"http/1.1"]);
        let tcp = TcpStream::connect(sim.addr()).await.expect("connect");
        let ip = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("ip name");
        let tls = connector.connect(ip, tcp).await.expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let headers = net::sdk_headers(&token, &net::request_id(), "application/proto");
        let (status, _, _) = net::h1_unary_on(
            tls,
            "POST",
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 200);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unary_calls_over_h2c_get_server_config_and_unimplemented() {
    let config = ServerConfig::new(SimConfig {
        http2_config: 2,
        ..SimConfig::default()
    });
    let (sim, token) = start(config).await;
    bounded(async {
        let mut client = net::h2c_connect(sim.addr()).await;
        let headers = net::sdk_headers(&token, &net::request_id(), "application/proto");
        let (status, _, body) = net::h2_unary(
            &mut client,
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            headers.clone(),
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 200);
        let resp = GetServerConfigResponse::decode(body).expect("GetServerConfigResponse");
        assert_eq!(resp.http2_config, 2);

        let (status, headers, body) =
            net::h2_unary(&mut client, "/no.Such/Method", headers, Bytes::new()).await;
        assert_eq!(status, 501);
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(json["code"], "unimplemented");
    })
    .await;
    sim.shutdown().await;
}

/// Runs one turn that is expected to fail; returns what the client saw.
async fn failing_run(sim: &SimHandle, token: &str) -> (ClientRun, h2::Error, H2Client) {
    let mut client = net::h2c_connect(sim.addr()).await;
    let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
    let first = net::new_turn("this run will fail");
    let err = net::h2_run(&mut client, token, &first, &mut run, &mut store)
        .await
        .expect_err("the fault breaks the run");
    (run, err, client)
}

#[tokio::test]
async fn rst_stream_fault_reaches_the_h2_client_after_the_updates_before_it() {
    let (sim, token) = start(with_fault(Fault::RstStream {
        after_updates: 2,
        code: 7,
    }))
    .await;
    bounded(async {
        let (run, err, client) = failing_run(&sim, &token).await;
        assert!(err.is_reset(), "stream reset, got {err:?}");
        assert_eq!(err.reason(), Some(Reason::REFUSED_STREAM));
        assert_eq!(
            run.t.messages.len(),
            2,
            "the updates before the fault were delivered"
        );
        assert!(run.t.end.is_none());
        // Only the stream died: the connection still serves calls.
        let mut client = client;
        let headers = net::sdk_headers(&token, &net::request_id(), "application/proto");
        let (status, _, _) = net::h2_unary(
            &mut client,
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 200);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn goaway_fault_reaches_the_h2_client_as_a_connection_goaway() {
    let (sim, token) = start(with_fault(Fault::GoAway {
        after_updates: 1,
        code: 2,
    }))
    .await;
    bounded(async {
        let (run, err, client) = failing_run(&sim, &token).await;
        // The stream was processed (its id is not above the GOAWAY's last stream id), so the
        // h2 client fails it when the connection closes; the connection reports the GOAWAY.
        assert!(!err.is_reset(), "no stream reset: {err:?}");
        assert_eq!(
            run.t.messages.len(),
            1,
            "the update before the fault was delivered"
        );
        assert!(run.t.end.is_none());
        let conn_end = client.closed.await.expect("connection task");
        let conn_err = conn_end.expect_err("connection ended by GOAWAY");
        assert!(conn_err.is_go_away(), "connection GOAWAY, got {conn_err:?}");
        assert!(conn_err.is_remote());
        assert_eq!(conn_err.reason(), Some(Reason::INTERNAL_ERROR));
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_fault_closes_the_h2_connection_without_goodbye() {
    let (sim, token) = start(with_fault(Fault::DropConnection { after_updates: 1 })).await;
    bounded(async {
        let (run, err, _client) = failing_run(&sim, &token).await;
        assert!(
            !err.is_go_away() && !err.is_reset(),
            "no HTTP/2 goodbye: {err:?}"
        );
        assert!(
            err.is_io() || err.reason().is_none(),
            "transport failure: {err:?}"
        );
        assert_eq!(
            run.t.messages.len(),
            1,
            "the update before the fault was delivered"
        );
        assert!(run.t.end.is_none());
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn client_half_close_before_the_end_cancels_the_run() {
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let client = net::h2c_connect(sim.addr()).await;
        let headers = net::sdk_headers(&token, &net::request_id(), "application/connect+proto");
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = "http://127.0.0.1/agent.v1.AgentService/Run"
            .parse()
            .expect("uri");
        *req.headers_mut() = headers;
        let mut send = client.send.clone().ready().await.expect("ready");
        let (response, mut body_tx) = send.send_request(req, false).expect("request");
        let first = net::new_turn("cancel me");
        body_tx
            .send_data(common::envelope(&first), false)
            .expect("run request");
        let mut body = response.await.expect("response head").into_body();
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        // Wait for the first update (the request-context exec, deliberately left unanswered so
        // the turn cannot finish), then cancel the way the SDK does: END_STREAM, no reset.
        while run.t.messages.is_empty() {
            let chunk = body.data().await.expect("an update").expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            run.handle_server_bytes(&chunk, &mut store);
        }
        body_tx.send_data(Bytes::new(), true).expect("half-close");
        // The server ends the stream one way or another once it saw the cancel.
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(chunk) => {
                    run.handle_server_bytes(&chunk, &mut store);
                }
                Err(_) => break,
            }
        }
        // Counters are read after the stream ended, so the model has seen the close.
        assert_eq!(sim.counters().total.cancels, 1);
        drop(client);
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn one_mebibyte_run_request_passes_through_a_16_kib_window() {
    let config = ServerConfig {
        initial_window: Some(16 * 1024),
        ..ServerConfig::default()
    };
    let (sim, token) = start(config).await;
    bounded(async {
        let mut client = net::h2c_connect(sim.addr()).await;
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let big = "x".repeat(1024 * 1024);
        let first = net::new_turn(&big);
        net::h2_run(&mut client, &token, &first, &mut run, &mut store)
            .await
            .expect("run completes");
        assert!(run.t.turn_ended.is_some());
        assert!(run.t.end.as_ref().is_some_and(|e| e.error.is_none()));
    })
    .await;
    assert!(
        sim.counters().total.bytes_in >= 1024 * 1024,
        "the whole body reached the model"
    );
    sim.shutdown().await;
}

// --- raw HTTP/2 frames, for a client that ignores the window ---------------------------------

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK "literal header field without indexing, new name", no Huffman (RFC 7541 §6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value.as_bytes());
}

/// An HPACK string literal: 7-bit-prefix length (RFC 7541 §5.1), then the raw bytes.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        out.push(u8::try_from(len).expect("< 127"));
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push(u8::try_from(len % 128).expect("< 128") | 0x80);
            len /= 128;
        }
        out.push(u8::try_from(len).expect("< 128"));
    }
    out.extend_from_slice(s);
}

async fn read_frame(io: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.expect("frame header");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.expect("frame payload");
    (head[3], head[4], stream, payload)
}

#[tokio::test]
async fn data_frame_beyond_the_16_kib_window_gets_flow_control_error() {
    use tokio::io::AsyncWriteExt;
    let config = ServerConfig {
        initial_window: Some(16 * 1024),
        // Let one frame be larger than the window, so a single frame can overrun it.
        max_frame_size: Some(64 * 1024),
        ..ServerConfig::default()
    };
    let (sim, token) = start(config).await;
    bounded(async {
        let mut io = TcpStream::connect(sim.addr()).await.expect("connect");
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        io.write_all(&frame(FRAME_SETTINGS, 0, 0, &[]))
            .await
            .expect("settings");
        // Wait for the server's SETTINGS and acknowledge them: from then on its 16 KiB window
        // applies (TCP keeps our ACK ahead of the stream).
        loop {
            let (kind, flags, _, _) = read_frame(&mut io).await;
            if kind == FRAME_SETTINGS && flags & FLAG_ACK == 0 {
                break;
            }
        }
        io.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
            .await
            .expect("ack");

        let mut block = Vec::new();
        hpack_literal(&mut block, ":method", "POST");
        hpack_literal(&mut block, ":scheme", "http");
        hpack_literal(&mut block, ":path", "/agent.v1.AgentService/Run");
        hpack_literal(&mut block, ":authority", "127.0.0.1");
        hpack_literal(&mut block, "content-type", "application/connect+proto");
        hpack_literal(&mut block, "connect-protocol-version", "1");
        hpack_literal(&mut block, "x-request-id", &net::request_id());
        hpack_literal(&mut block, "authorization", &format!("Bearer {token}"));
        io.write_all(&frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block))
            .await
            .expect("headers");
        io.write_all(&frame(FRAME_DATA, 0, 1, &vec![0u8; 20_000]))
            .await
            .expect("oversized data");

        let code = loop {
            let (kind, _, stream, payload) = read_frame(&mut io).await;
            match kind {
                FRAME_RST_STREAM if stream == 1 => {
                    break u32::from_be_bytes(payload[..4].try_into().expect("code"));
                }
                FRAME_GOAWAY => {
                    break u32::from_be_bytes(payload[4..8].try_into().expect("code"));
                }
                _ => {}
            }
        };
        assert_eq!(code, u32::from(Reason::FLOW_CONTROL_ERROR));
    })
    .await;
    // Nothing beyond the window was handed to the model.
    assert!(sim.counters().total.bytes_in < 20_000);
    sim.shutdown().await;
}
