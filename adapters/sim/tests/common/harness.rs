//! [`Harness`]: an in-process [`Sim`] driven with simulated time over either transport.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cursorpool_core::bidi::{DataEncoding, encode_append, run_sse_request_body};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_sim::model::{
    HttpRequest, HttpResponse, RunId, RunOutput, Sim, SimConfig, Transport,
};

use super::{BlobStore, ClientRun, Policy, Transcript, envelope, headers, run_request};

/// How a harness run talks upstream.
#[derive(Debug, Clone)]
pub enum Wire {
    /// `Run`: client messages are envelopes on the request body.
    H2,
    /// `RunSSE`: client messages are `BidiAppend` calls.
    Sse {
        /// The request id.
        request_id: String,
        /// Next `append_seqno`.
        seqno: i64,
    },
}

/// One open run in a [`Harness`].
#[derive(Debug)]
pub struct HRun {
    /// The sim's id.
    pub id: RunId,
    /// The client side.
    pub client: ClientRun,
    /// Transport.
    pub wire: Wire,
    /// Access token used.
    pub token: String,
}

/// An in-process sim with simulated time.
#[derive(Debug)]
pub struct Harness {
    /// The model.
    pub sim: Sim,
    /// Monotonic time.
    pub now: Instant,
    /// Wall time.
    pub wall: SystemTime,
    /// The client's blob store.
    pub store: BlobStore,
}

impl Harness {
    /// A sim with `config`, at a fixed start time.
    pub fn new(config: SimConfig) -> Self {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Self {
            sim: Sim::new(config, now, wall),
            now,
            wall,
            store: BlobStore::new(),
        }
    }

    /// An access token for `label`.
    pub fn token(&mut self, label: &str) -> String {
        self.sim.issue_token(label, self.wall).expect("account")
    }

    /// A unary/plain request.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> HttpResponse {
        self.sim.handle_request(
            HttpRequest {
                method,
                path,
                query,
                headers,
                body,
            },
            self.now,
            self.wall,
        )
    }

    /// Opens a `Run` (h2) stream and sends `first` on it.
    pub fn open_h2(&mut self, token: &str, policy: Policy, first: &pb::AgentClientMessage) -> HRun {
        let h = headers(token, "application/connect+proto", Some("req-h2"));
        let id = self
            .sim
            .open_run(Transport::Run, &h, self.now, self.wall)
            .expect("stream accepted");
        let mut run = HRun {
            id,
            client: ClientRun::new(policy),
            wire: Wire::H2,
            token: token.to_owned(),
        };
        self.send(&mut run, first);
        run
    }

    /// Opens a `RunSSE` stream with `request_id` (its body = the `BidiRequestId` envelope)
    /// and appends `first` as seqno 0.
    pub fn open_sse(
        &mut self,
        token: &str,
        request_id: &str,
        policy: Policy,
        first: &pb::AgentClientMessage,
    ) -> HRun {
        let h = headers(token, "application/connect+proto", Some(request_id));
        let id = self
            .sim
            .open_run(
                Transport::RunSse {
                    request_id: request_id.to_owned(),
                },
                &h,
                self.now,
                self.wall,
            )
            .expect("stream accepted");
        self.sim
            .handle_run_body(id, &run_sse_request_body(request_id), self.now);
        let mut run = HRun {
            id,
            client: ClientRun::new(policy),
            wire: Wire::Sse {
                request_id: request_id.to_owned(),
                seqno: 0,
            },
            token: token.to_owned(),
        };
        self.send(&mut run, first);
        run
    }

    /// A raw `BidiAppend` call.
    pub fn append(
        &mut self,
        token: &str,
        request_id: &str,
        seqno: i64,
        m: &pb::AgentClientMessage,
    ) -> HttpResponse {
        let body = encode_append(request_id, seqno, m, DataEncoding::Hex);
        let h = headers(token, "application/proto", Some(request_id));
        self.request("POST", "/aiserver.v1.BidiService/BidiAppend", "", &h, &body)
    }

    /// Sends one client message upstream on `run`'s transport.
    pub fn send(&mut self, run: &mut HRun, m: &pb::AgentClientMessage) {
        match &mut run.wire {
            Wire::H2 => self.sim.handle_run_body(run.id, &envelope(m), self.now),
            Wire::Sse { request_id, seqno } => {
                let (rid, n) = (request_id.clone(), *seqno);
                *seqno += 1;
                let token = run.token.clone();
                let r = self.append(&token, &rid, n, m);
                assert_eq!(r.status, 200, "BidiAppend failed: {:?}", r.body);
            }
        }
    }

    /// Delivers every pending output to `run`'s client and sends its replies, until quiet.
    /// Outputs of other runs are dropped.
    pub fn pump(&mut self, run: &mut HRun) {
        loop {
            let mut replies = Vec::new();
            while let Some((id, out)) = self.sim.poll_output() {
                if id != run.id {
                    continue;
                }
                match out {
                    RunOutput::Data(b) => {
                        replies.extend(run.client.handle_server_bytes(&b, &mut self.store));
                    }
                    RunOutput::Finished => run.client.t.finished = true,
                    other => run.client.t.transport_end = Some(other),
                }
            }
            if replies.is_empty() {
                break;
            }
            for m in &replies {
                self.send(run, m);
            }
        }
    }

    /// Moves time forward by `d`, firing every timer on the way, pumping `run`.
    pub fn advance(&mut self, run: &mut HRun, d: Duration) {
        let end = self.now + d;
        self.pump(run);
        while let Some(t) = self.sim.poll_timeout() {
            if t > end {
                break;
            }
            self.wall += t.saturating_duration_since(self.now);
            self.now = self.now.max(t);
            self.sim.handle_timeout(self.now, self.wall);
            self.pump(run);
        }
        self.wall += end.saturating_duration_since(self.now);
        self.now = end;
        self.sim.handle_timeout(self.now, self.wall);
        self.pump(run);
    }

    /// Pumps and advances time until `run`'s response ended (or `limit` passed).
    pub fn run_to_end(&mut self, run: &mut HRun, limit: Duration) {
        let end = self.now + limit;
        self.pump(run);
        while !run.client.t.finished && run.client.t.transport_end.is_none() && self.now < end {
            let step = self
                .sim
                .poll_timeout()
                .map_or(end, |t| t.min(end))
                .max(self.now);
            let d = step.saturating_duration_since(self.now);
            self.advance(run, d);
            if d.is_zero() && self.sim.poll_timeout().is_none_or(|t| t > end) {
                break;
            }
        }
    }

    /// All `pre_fetched_blobs` the client could send (its whole store).
    pub fn prefetch_all(&self) -> Vec<pb::PreFetchedBlob> {
        self.store
            .iter()
            .map(|(id, value)| pb::PreFetchedBlob {
                id: id.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// One full text turn over `Run` with default policy; returns the transcript.
    pub fn simple_turn(&mut self, token: &str, text: &str, state: Option<Bytes>) -> Transcript {
        let req = run_request(text, Some(state.unwrap_or_default()), &[], "default", &[]);
        let mut run = self.open_h2(token, Policy::default(), &req);
        self.run_to_end(&mut run, Duration::from_secs(60));
        run.client.t
    }
}
