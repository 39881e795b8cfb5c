//! The plugins' metered `complete`, reaching the gateway: a model call made by a router,
//! verifier or hook is reserved, sent and settled like any other, and charged to the task the
//! plugin runs for, with the plugin's role and stage in its ledger row.

use std::sync::Arc;

use super::role_of;
use crate::gateway::chat::{ChatRequest, Message as ChatMessage, Role as ChatRole};
use crate::gateway::metered::{CallTag, Gateway, GatewayError};
use crate::plugin::types::{Completion, CompletionRequest, HostError, PromptRole};
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
            PromptRole::System => system.push(&m.content),
            PromptRole::User => messages.push(ChatMessage::user(m.content.clone())),
            PromptRole::Assistant => messages.push(ChatMessage {
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
            let tag = CallTag {
                scope: RowScope::attempt(
                    &self.run_id,
                    &caller.task_id,
                    caller.attempt,
                    caller.stage,
                    role_of(caller.world),
                ),
                attempt_cap: None,
            };
            match self
                .gateway
                .complete(&tag, &request.model, chat_request(&request))
                .await
            {
                Ok(done) => Ok(Completion {
                    text: done.response.text(),
                    model: done.response.model.clone(),
                    usage: done.response.usage.unwrap_or_default(),
                    cost: done.charged,
                    stop_reason: done.response.stop.contract_name().to_string(),
                }),
                Err(GatewayError::Budget { exhausted, .. }) => {
                    Err(HostError::BudgetExhausted(exhausted.to_string()))
                }
                Err(error) => Err(HostError::Failed(error.to_string())),
            }
        })
    }
}
