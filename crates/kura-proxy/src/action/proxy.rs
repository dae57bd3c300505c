//! The `proxy` rule action: the request goes to the rule's pool and the answer streams back.
//! A rule with a `shadow` table copies a share of its requests to other pools (the primary's
//! answer is teed into the comparison by the finish phase); an upgrade request becomes a
//! tunnel (`upgrade.rs`).

use std::sync::Arc;
use std::time::Instant;

use http::Response;
use kura_shadow::{Shadow, ShadowRule};

use crate::action::Reply;
use crate::action::shadow::{self, ShadowedRequest};
use crate::body::ProxyBody;
use crate::context::Exchange;
use crate::errors::ProxyError;
use crate::upstream::{Outgoing, Pool};

/// A proxy rule ready to serve.
pub struct ProxyAction {
    /// Shadowing of the rule's requests, if configured.
    pub shadow: Option<Arc<ShadowRule>>,
}

/// What shadowing reads of a request besides what is forwarded.
pub struct ClientSide<'a> {
    /// The client's normalised path (shadow selection and endpoint names use it).
    pub path: &'a str,
    /// The body length the client declared, if any.
    pub declared: Option<u64>,
}

impl ProxyAction {
    /// Forwards `out` to `pool`, copying it to the shadow targets when the rule selects it.
    pub async fn serve(
        &self,
        pool: &Pool,
        engine: &Shadow,
        mut out: Outgoing,
        client: ClientSide<'_>,
        x: &mut Exchange,
    ) -> Result<Reply, ProxyError> {
        let shadowing = match &self.shadow {
            Some(rule) => shadow::begin(
                engine,
                rule,
                ShadowedRequest {
                    method: &out.method,
                    client_path: client.path,
                    upstream_path: &out.path,
                    headers: &out.headers,
                    declared: client.declared,
                },
                &mut out.body,
            ),
            None => None,
        };
        let mut reply = forward(pool, out, x).await?;
        if let Reply::Relayed { shadowing: s, .. } = &mut reply {
            *s = shadowing.map(|s| s.answered_in(x.upstream_time));
        }
        Ok(reply)
    }
}

/// Sends `out` to `pool` and relays the answer (its body streaming, the backend connection
/// released when the body ends), noting the backend and its time in the exchange.
pub async fn forward(pool: &Pool, out: Outgoing, x: &mut Exchange) -> Result<Reply, ProxyError> {
    let sent_at = Instant::now();
    let answer = pool.send(out).await?;
    x.upstream_time = Some(sent_at.elapsed());
    x.upstream = Some(answer.lease.backend.spec.authority.as_str().into());
    let (parts, body) = answer.response.into_parts();
    let received = parts.version;
    Ok(Reply::Relayed {
        response: Response::from_parts(parts, ProxyBody::upstream(body, answer.lease)),
        received,
        shadowing: None,
    })
}
