//! [`SmolPlatform`]: what the host needs from the runtime, answered with smol (tasks on smol's
//! global executor, `async-io` timers) and [`H1Upstream`] (HTTP/1.1 `RunSSE` + `BidiAppend`).

use std::sync::Arc;
use std::time::Duration;

use cursorpool_host::upstream::{BoxFuture, Pairing, Platform, Upstream, UpstreamError};

use crate::upstream::H1Upstream;

/// The smol runtime as a host [`Platform`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolPlatform;

impl SmolPlatform {
    /// The platform, shared.
    pub fn shared() -> Arc<dyn Platform> {
        Arc::new(Self)
    }
}

impl Platform for SmolPlatform {
    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        crate::executor::spawn(fut).detach();
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(d).await;
        })
    }

    fn upstream(
        &self,
        base_url: &str,
        extra_roots_pem: Option<&[u8]>,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        Ok(Arc::new(H1Upstream::new(base_url, extra_roots_pem)?))
    }

    fn pairing(&self) -> Pairing {
        Pairing::RunSse
    }
}
