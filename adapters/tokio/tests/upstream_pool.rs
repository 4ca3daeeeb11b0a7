//! The pooled upstream connection against the simulated backend over loopback.

use bytes::Bytes;
use cursorpool_core::headers::{self, CallHeaders, CallKind, ClientIdentity};
use cursorpool_proto::Message;
use cursorpool_proto::aiserver_v1::GetServerConfigResponse;
use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, spawn};
use cursorpool_tokio::upstream::Upstream;

fn unary_headers(token: &str, id: &str) -> http::HeaderMap {
    headers::build(
        &ClientIdentity::default(),
        CallHeaders {
            access_token: token,
            request_id: id,
            original_request_id: None,
            kind: CallKind::Unary,
        },
    )
    .expect("valid headers")
}

async fn many_unary_calls_share_one_connection(tls: bool) {
    let mut sim_config = SimConfig {
        http2_config: 2,
        ..SimConfig::default()
    };
    sim_config.seed = 3;
    let mut config = ServerConfig::new(sim_config);
    config.tls = tls;
    let sim = spawn(config).await.expect("sim starts");
    let token = sim.access_token("default").expect("token");
    let upstream = std::sync::Arc::new(
        Upstream::new(&sim.base_url(), sim.cert_pem().map(str::as_bytes)).expect("upstream"),
    );
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let upstream = upstream.clone();
        let h = unary_headers(&token, &format!("req-{i}"));
        calls.spawn(async move {
            upstream
                .call(
                    http::Method::POST,
                    headers::path::GET_SERVER_CONFIG,
                    &h,
                    Bytes::new(),
                    1 << 20,
                )
                .await
        });
    }
    while let Some(r) = calls.join_next().await {
        let (status, _, body) = r.expect("task").expect("call succeeds");
        assert_eq!(status, 200);
        let cfg = GetServerConfigResponse::decode(body).expect("proto body");
        assert_eq!(cfg.http2_config, 2);
    }
    assert_eq!(upstream.connects(), 1, "20 calls, one connection");
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_unary_calls_over_h2c_share_one_pooled_connection() {
    many_unary_calls_share_one_connection(false).await;
}

#[tokio::test]
async fn concurrent_unary_calls_over_tls_share_one_pooled_connection() {
    many_unary_calls_share_one_connection(true).await;
}
