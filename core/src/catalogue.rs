//! Cursor's model catalogue: `agent.v1.AgentService/GetUsableModels` (spec §2.2 and the model
//! listing notes), a unary `application/proto` call with the normal headers. It is the cheapest
//! authenticated call there is, so `cursorpool check` uses it to prove that an account works,
//! and `cursorpool models` to show what Cursor offers.

use prost::Message as _;

use crate::classify::{Classification, Failure, classify};

/// One model Cursor offers to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorModel {
    /// The id to send in a run (`model_id`).
    pub id: String,
    /// Cursor's label for it.
    pub display_name: String,
}

/// Why the catalogue could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// Cursor refused the call (the classification says why: a bad token, a blocked account…).
    #[error("{} (HTTP {}): {}", .0.kind.as_str(), .0.client_status, .0.message)]
    Refused(Classification),
    /// A 200 answer that is not a `GetUsableModelsResponse`.
    #[error("the model list is not a valid GetUsableModelsResponse: {0}")]
    Malformed(String),
}

/// The request body: an empty `GetUsableModelsRequest`.
pub fn usable_models_request() -> Vec<u8> {
    cursorpool_proto::agent_v1::GetUsableModelsRequest::default().encode_to_vec()
}

/// Reads the answer (`status` and body) of a `GetUsableModels` call.
pub fn parse_usable_models(status: u16, body: &[u8]) -> Result<Vec<CursorModel>, CatalogueError> {
    if status != 200 {
        return Err(CatalogueError::Refused(classify(Failure::HttpStatus {
            status,
            body,
        })));
    }
    let answer = cursorpool_proto::agent_v1::GetUsableModelsResponse::decode(body)
        .map_err(|e| CatalogueError::Malformed(e.to_string()))?;
    Ok(answer
        .models
        .into_iter()
        .map(|m| CursorModel {
            display_name: if m.display_name.is_empty() {
                m.model_id.clone()
            } else {
                m.display_name
            },
            id: m.model_id,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::FailureKind;

    #[test]
    fn a_model_list_is_read_in_order() {
        let body = cursorpool_proto::agent_v1::GetUsableModelsResponse {
            models: vec![
                cursorpool_proto::agent_v1::ModelDetails {
                    model_id: "default".into(),
                    display_name: "Auto".into(),
                    ..Default::default()
                },
                cursorpool_proto::agent_v1::ModelDetails {
                    model_id: "gpt-5".into(),
                    ..Default::default()
                },
            ],
        }
        .encode_to_vec();
        let models = parse_usable_models(200, &body).unwrap();
        assert_eq!(models[0].id, "default");
        assert_eq!(models[0].display_name, "Auto");
        assert_eq!(models[1].display_name, "gpt-5");
    }

    #[test]
    fn a_refusal_is_classified() {
        let body = br#"{"code":"unauthenticated","message":"Invalid or expired access token"}"#;
        let Err(CatalogueError::Refused(c)) = parse_usable_models(401, body) else {
            panic!("a 401 is a refusal");
        };
        assert_eq!(c.kind, FailureKind::Unauthenticated);
        assert!(matches!(
            parse_usable_models(200, b"\xff\xff"),
            Err(CatalogueError::Malformed(_))
        ));
    }
}
