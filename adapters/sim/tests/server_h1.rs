//! The loopback server over HTTP/1.1: `RunSSE` + `BidiAppend` the way the SDK pairs them,
//! unary calls, the server's own Connect errors, and faults as connection aborts.
#![cfg(feature = "server")]

mod common;
mod server_support;

use bytes::Bytes;
use common::{BlobStore, ClientRun, Policy};
use cursorpool_proto::aiserver_v1::GetServerConfigResponse;
use cursorpool_sim::model::{Fault, FaultRule, FaultRuns, SimConfig};
use cursorpool_sim::server::{self, ServerConfig, SimHandle};
use prost::Message;
use server_support::{self as net, SseEnd, bounded};

async fn start(config: ServerConfig) -> (SimHandle, String) {
    let sim = server::spawn(config).await.expect("server starts");
    let token = sim
        .access_token("default")
        .expect("token for the default account");
    (sim, token)
}

#[tokio::test]
async fn text_turn_over_http1_run_sse_with_early_and_out_of_order_appends() {
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let first = net::new_turn("hello over HTTP/1.1");
        let end = net::sse_run(sim.addr(), &token, &first, &mut run, &mut store).await;
        assert!(
            matches!(end, SseEnd::Complete),
            "chunked body completed: {end:?}"
        );
        assert!(!run.t.text.is_empty(), "an answer was streamed");
        assert!(run.t.turn_ended.is_some());
        assert!(run.t.last_checkpoint().is_some());
        let end = run.t.end.as_ref().expect("end-stream received");
        assert!(end.error.is_none(), "turn succeeded: {end:?}");
    })
    .await;
    let counters = sim.counters();
    assert_eq!(counters.total.turns_completed, 1);
    assert_eq!(counters.total.runs_by_rpc.get("RunSSE"), Some(&1));
    assert_eq!(counters.streams.get("/agent.v1.AgentService/Run"), None);
    assert!(
        counters.bidi_early >= 1,
        "the run request arrived before RunSSE"
    );
    assert!(
        counters.bidi_out_of_order >= 1,
        "later appends were buffered until the gap filled"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_server_config_returns_the_configured_http2_config() {
    for value in [0, 2, 3] {
        let config = ServerConfig::new(SimConfig {
            http2_config: value,
            ..SimConfig::default()
        });
        let (sim, token) = start(config).await;
        bounded(async {
            let headers = net::sdk_headers(&token, &net::request_id(), "application/proto");
            let (status, headers, body) = net::h1_unary(
                sim.addr(),
                "POST",
                "/aiserver.v1.ServerConfigService/GetServerConfig",
                headers,
                Bytes::new(),
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(headers["content-type"], "application/proto");
            let resp = GetServerConfigResponse::decode(body).expect("GetServerConfigResponse");
            assert_eq!(resp.http2_config, value);
        })
        .await;
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_path_gets_connect_unimplemented_501() {
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let headers = net::sdk_headers(&token, &net::request_id(), "application/proto");
        let (status, headers, body) = net::h1_unary(
            sim.addr(),
            "POST",
            "/aiserver.v1.NoSuchService/Nothing",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 501);
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(json["code"], "unimplemented");
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn run_sse_without_a_request_id_is_invalid_argument() {
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let mut headers = net::sdk_headers(&token, "unused", "application/connect+proto");
        headers.remove("x-request-id");
        let (status, _, body) = net::h1_unary(
            sim.addr(),
            "POST",
            "/agent.v1.AgentService/RunSSE",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 400);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(json["code"], "invalid_argument");
    })
    .await;
    sim.shutdown().await;
}

/// A run over HTTP/1.1 under `fault`: the connection is aborted after the updates before it.
async fn aborted_sse_run(fault: Fault, after: usize) {
    let config = ServerConfig::new(SimConfig {
        faults: vec![FaultRule {
            account: None,
            runs: FaultRuns::All,
            fault,
        }],
        ..SimConfig::default()
    });
    let (sim, token) = start(config).await;
    bounded(async {
        let (mut run, mut store) = (ClientRun::new(Policy::default()), BlobStore::new());
        let first = net::new_turn("this run will be aborted");
        let end = net::sse_run(sim.addr(), &token, &first, &mut run, &mut store).await;
        assert!(
            matches!(end, SseEnd::Aborted(_)),
            "connection aborted: {end:?}"
        );
        assert_eq!(
            run.t.messages.len(),
            after,
            "the updates before the fault were delivered"
        );
        assert!(run.t.end.is_none(), "no end-stream after an abort");
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn rst_fault_aborts_the_http1_run_connection_without_the_last_chunk() {
    aborted_sse_run(
        Fault::RstStream {
            after_updates: 2,
            code: 2,
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn goaway_fault_aborts_the_http1_run_connection() {
    aborted_sse_run(
        Fault::GoAway {
            after_updates: 1,
            code: 2,
        },
        1,
    )
    .await;
}

#[tokio::test]
async fn drop_fault_aborts_the_http1_run_connection() {
    aborted_sse_run(Fault::DropConnection { after_updates: 3 }, 3).await;
}

#[tokio::test]
async fn client_disconnect_from_run_sse_cancels_the_run() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let rid = net::request_id();
        net::bidi_append(sim.addr(), &token, &rid, 0, &net::new_turn("cancel me")).await;
        let body = cursorpool_core::bidi::run_sse_request_body(&rid);
        let head = format!(
            "POST /agent.v1.AgentService/RunSSE HTTP/1.1\r\nhost: 127.0.0.1\r\n\
             content-type: application/connect+proto\r\nconnect-protocol-version: 1\r\n\
             authorization: Bearer {token}\r\nx-request-id: {rid}\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        let mut io = tokio::net::TcpStream::connect(sim.addr())
            .await
            .expect("connect");
        io.write_all(head.as_bytes()).await.expect("request head");
        io.write_all(&body).await.expect("request body");
        // Read the response head and the first update (the request-context exec, left
        // unanswered so the turn cannot finish), then go away like the SDK's cancel.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let body_started = |seen: &[u8]| {
            seen.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|end| seen.len() > end + 4)
        };
        while !body_started(&seen) {
            let n = io.read(&mut buf).await.expect("read");
            assert_ne!(n, 0, "the run stays open until the client leaves");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"));
        drop(io);
        while sim.counters().total.cancels == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(sim.counters().total.cancels, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unary_calls_share_one_keep_alive_connection() {
    use http_body_util::{BodyExt, Full};
    let (sim, token) = start(ServerConfig::default()).await;
    bounded(async {
        let tcp = tokio::net::TcpStream::connect(sim.addr())
            .await
            .expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("handshake");
        let conn = tokio::spawn(conn);
        for path in [
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            "/aiserver.v1.DashboardService/GetUserPrivacyMode",
            "/aiserver.v1.NoSuchService/Nothing",
        ] {
            let mut req = http::Request::new(Full::new(Bytes::new()));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = path.parse().expect("path");
            *req.headers_mut() = net::sdk_headers(&token, &net::request_id(), "application/proto");
            req.headers_mut()
                .insert("host", http::HeaderValue::from_static("127.0.0.1"));
            send.ready().await.expect("connection still usable");
            let resp = send.send_request(req).await.expect("response");
            let expected = if path.contains("NoSuch") { 501 } else { 200 };
            assert_eq!(resp.status(), expected, "{path}");
            resp.into_body().collect().await.expect("body");
        }
        drop(send);
        conn.await
            .expect("task")
            .expect("connection closed cleanly");
    })
    .await;
    sim.shutdown().await;
}
