//! The tokio [`Platform`]: tasks on the current runtime, tokio timers, one pooled HTTP/2
//! connection per account (`Run`).

use std::sync::Arc;
use std::time::Duration;

use cursorpool_host::upstream::{self, BoxFuture, Pairing, Platform, UpstreamError};

use crate::upstream::Upstream;

/// The tokio runtime as the host sees it.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioPlatform;

impl TokioPlatform {
    /// The platform, shared.
    pub fn shared() -> Arc<dyn Platform> {
        Arc::new(Self)
    }
}

impl Platform for TokioPlatform {
    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        tokio::spawn(fut);
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }

    fn upstream(
        &self,
        base_url: &str,
        extra_roots_pem: Option<&[u8]>,
    ) -> Result<Arc<dyn upstream::Upstream>, UpstreamError> {
        Ok(Arc::new(Upstream::new(base_url, extra_roots_pem)?))
    }

    fn pairing(&self) -> Pairing {
        Pairing::Run
    }
}
