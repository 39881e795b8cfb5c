//! The plugins' metered `complete`, reaching the gateway: a model call made by a router,
//! verifier or hook is reserved, sent and settled like any other, and charged to the task the
//! plugin runs for, with the plugin's role and stage in its ledger row.

use std::sync::Arc;

use super::stage_and_role;
use crate::gateway::chat::{ChatRequest, Message as ChatMessage, Role as ChatRole};
use crate::gateway::metered::{CallTag, Gateway, GatewayError};
use crate::plugin::bindings::host_api::{Completion, CompletionRequest, HostError, Role};
use crate::plugin::types::TokenUsage;
use crate::plugin::{BoxFuture, ModelAccess, PluginCaller};
use crate::store::RowScope;

/// [`ModelAccess`] over the gateway, for one run.
pub struct GatewayModels {
    gateway: Arc<Gateway>,
    run_id: String,
}

impl GatewayModels {
    pub fn new(gateway: Arc<Gateway>, run_id: impl Into<String>) -> GatewayModels {
        GatewayModels {
            gateway,
            run_id: run_id.into(),
        }
    }
}

/// The plugin's messages as a gateway request: system messages become the system prompt.
fn chat_request(request: &CompletionRequest) -> ChatRequest {
    let mut system: Vec<&str> = Vec::new();
    let mut messages = Vec::new();
    for m in &request.messages {
        match m.role {
            Role::System => system.push(&m.content),
            Role::User => messages.push(ChatMessage::user(m.content.clone())),
            Role::Assistant => messages.push(ChatMessage {
                role: ChatRole::Assistant,
                blocks: vec![crate::gateway::chat::Block::Text(m.content.clone())],
            }),
        }
    }
    ChatRequest {
        model: String::new(),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        tools: vec![],
        max_tokens: request.max_tokens,
    }
}

impl ModelAccess for GatewayModels {
    fn complete<'a>(
        &'a self,
        caller: &'a PluginCaller,
        request: CompletionRequest,
    ) -> BoxFuture<'a, Result<Completion, HostError>> {
        Box::pin(async move {
            let (stage, role) = stage_and_role(caller.world);
            let tag = CallTag {
                scope: RowScope {
                    run_id: self.run_id.clone(),
                    task_id: Some(caller.task_id.clone()),
                    attempt: Some(caller.attempt),
                    stage: stage.to_string(),
                    phase: None,
                    role: role.to_string(),
                    model: String::new(),
                },
                attempt_cap: None,
            };
            match self
                .gateway
                .complete(&tag, &request.model, chat_request(&request))
                .await
            {
                Ok(done) => {
                    let usage = done.response.usage.unwrap_or_default();
                    Ok(Completion {
                        text: done.response.text(),
                        model: done.response.model.clone(),
                        usage: TokenUsage {
                            input: usage.input,
                            output: usage.output,
                            cache_read: usage.cache_read,
                            cache_write: usage.cache_write,
                        },
                        cost: done.charged,
                        stop_reason: format!("{:?}", done.response.stop),
                    })
                }
                Err(GatewayError::Budget(exhausted)) => {
                    Err(HostError::BudgetExhausted(exhausted.to_string()))
                }
                Err(error) => Err(HostError::Failed(error.to_string())),
            }
        })
    }
}
