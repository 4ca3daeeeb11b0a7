//! Answers to interaction queries (spec §5.8, §6.7). Each query is answered on the
//! same-numbered field of `InteractionResponse` with the query's `id`; an unanswered query
//! blocks the model.

use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Acm;
use cursorpool_proto::agent_v1::interaction_response::Result as R;

use super::wrap;
use crate::update::QueryKind;

fn respond(id: u32, result: R) -> pb::AgentClientMessage {
    wrap(Acm::InteractionResponse(pb::InteractionResponse {
        id,
        result: Some(result),
    }))
}

/// Answers a query the way the SDK does (§6.7): web search, web fetch, mode switch and image
/// generation approved; a question to the user and MCP auth rejected with `reason`; plan
/// creation and VM setup succeed; env replacement fails and PR management errors with `reason`.
///
/// `None` for [`QueryKind::Unknown`]: no response member exists for it in this schema; the
/// caller should cancel the run rather than leave the model blocked.
pub fn answer_query(id: u32, kind: QueryKind, reason: &str) -> Option<pb::AgentClientMessage> {
    use pb::generate_image_request_response as gi;
    use pb::switch_mode_request_response as sm;
    use pb::web_fetch_request_response as wf;
    use pb::web_search_request_response as ws;
    let result = match kind {
        QueryKind::WebSearch => R::WebSearchRequestResponse(pb::WebSearchRequestResponse {
            result: Some(ws::Result::Approved(ws::Approved {})),
        }),
        QueryKind::WebFetch => R::WebFetchRequestResponse(pb::WebFetchRequestResponse {
            result: Some(wf::Result::Approved(wf::Approved {})),
        }),
        QueryKind::SwitchMode => R::SwitchModeRequestResponse(pb::SwitchModeRequestResponse {
            result: Some(sm::Result::Approved(sm::Approved {})),
        }),
        QueryKind::GenerateImage => {
            R::GenerateImageRequestResponse(pb::GenerateImageRequestResponse {
                result: Some(gi::Result::Approved(gi::Approved {
                    description: String::new(),
                })),
            })
        }
        QueryKind::CreatePlan => R::CreatePlanRequestResponse(pb::CreatePlanRequestResponse {
            result: Some(pb::CreatePlanResult {
                result: Some(pb::create_plan_result::Result::Success(
                    pb::CreatePlanSuccess {},
                )),
                plan_uri: String::new(),
            }),
        }),
        QueryKind::SetupVmEnvironment => setup_vm_success(),
        QueryKind::PrManagement => R::PrManagementResult(pb::PrManagementResult {
            result: Some(pb::pr_management_result::Result::Error(
                pb::PrManagementError {
                    error: reason.to_owned(),
                },
            )),
        }),
        QueryKind::AskQuestion
        | QueryKind::McpAuth
        | QueryKind::ReplaceEnv
        | QueryKind::Unknown { .. } => return reject_query(id, kind, reason),
    };
    Some(respond(id, result))
}

/// Refuses a query with `reason` on its own response field: `rejected{reason}` where the
/// response has one (PR management included), else the error/failure variant (plan creation,
/// env replacement). VM setup has only `success{}`, so it is
/// answered with that. `None` for [`QueryKind::Unknown`] (see [`answer_query`]).
pub fn reject_query(id: u32, kind: QueryKind, reason: &str) -> Option<pb::AgentClientMessage> {
    use pb::generate_image_request_response as gi;
    use pb::mcp_auth_request_response as ma;
    use pb::switch_mode_request_response as sm;
    use pb::web_fetch_request_response as wf;
    use pb::web_search_request_response as ws;
    let reason = reason.to_owned();
    let result = match kind {
        QueryKind::WebSearch => R::WebSearchRequestResponse(pb::WebSearchRequestResponse {
            result: Some(ws::Result::Rejected(ws::Rejected { reason })),
        }),
        QueryKind::WebFetch => R::WebFetchRequestResponse(pb::WebFetchRequestResponse {
            result: Some(wf::Result::Rejected(wf::Rejected { reason })),
        }),
        QueryKind::SwitchMode => R::SwitchModeRequestResponse(pb::SwitchModeRequestResponse {
            result: Some(sm::Result::Rejected(sm::Rejected { reason })),
        }),
        QueryKind::GenerateImage => {
            R::GenerateImageRequestResponse(pb::GenerateImageRequestResponse {
                result: Some(gi::Result::Rejected(gi::Rejected { reason })),
            })
        }
        QueryKind::McpAuth => R::McpAuthRequestResponse(pb::McpAuthRequestResponse {
            result: Some(ma::Result::Rejected(ma::Rejected { reason })),
        }),
        QueryKind::AskQuestion => {
            R::AskQuestionInteractionResponse(pb::AskQuestionInteractionResponse {
                result: Some(pb::AskQuestionResult {
                    result: Some(pb::ask_question_result::Result::Rejected(
                        pb::AskQuestionRejected { reason },
                    )),
                }),
            })
        }
        QueryKind::CreatePlan => R::CreatePlanRequestResponse(pb::CreatePlanRequestResponse {
            result: Some(pb::CreatePlanResult {
                result: Some(pb::create_plan_result::Result::Error(pb::CreatePlanError {
                    error: reason,
                })),
                plan_uri: String::new(),
            }),
        }),
        QueryKind::SetupVmEnvironment => setup_vm_success(),
        QueryKind::PrManagement => R::PrManagementResult(pb::PrManagementResult {
            result: Some(pb::pr_management_result::Result::Rejected(
                pb::PrManagementRejected { reason },
            )),
        }),
        QueryKind::ReplaceEnv => R::ReplaceEnvResult(pb::ReplaceEnvResult {
            result: Some(pb::replace_env_result::Result::Failure(
                pb::ReplaceEnvFailure {
                    error_message: reason,
                    setup_logs: String::new(),
                },
            )),
        }),
        QueryKind::Unknown { .. } => return None,
    };
    Some(respond(id, result))
}

fn setup_vm_success() -> R {
    R::SetupVmEnvironmentResult(pb::SetupVmEnvironmentResult {
        result: Some(pb::setup_vm_environment_result::Result::Success(
            pb::SetupVmEnvironmentSuccess {},
        )),
    })
}
