//! Server-sent events, read incrementally as a stream passes through: the proxy forwards every
//! byte as it comes and only watches the events go by for the usage they report.

use serde_json::Value;

use crate::store::TokenCounts;

use super::wire::{self, AgentProtocol};

/// Splits a byte stream into server-sent events (`event:` and `data:` lines up to a blank
/// line), however the bytes are cut into chunks.
#[derive(Debug, Default)]
pub struct EventReader {
    pending: Vec<u8>,
}

/// One event: its `event:` name (empty when none) and its `data:` lines joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// An event bigger than this is not one a provider sends; the reader stops buffering it (the
/// bytes still pass through) so a hostile upstream cannot grow the proxy's memory.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl EventReader {
    /// Feed the next chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, skip)) = block_end(&self.pending) {
            let block: Vec<u8> = self.pending.drain(..end + skip).take(end).collect();
            if let Some(event) = parse_block(&block) {
                events.push(event);
            }
        }
        if self.pending.len() > MAX_EVENT_BYTES {
            self.pending.clear();
        }
        events
    }
}

/// Where the first blank line is: the end of the event, and the length of the separator.
fn block_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' && bytes[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            if bytes[i + 2..].starts_with(b"\r\n") {
                return Some((i, 4));
            }
            if bytes.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

fn parse_block(block: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(block);
    let mut name = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (!name.is_empty() || !data.is_empty()).then(|| Event {
        name,
        data: data.join("\n"),
    })
}

/// What a stream has said about its usage and its end so far.
#[derive(Debug)]
pub struct StreamUsage {
    protocol: AgentProtocol,
    reader: EventReader,
    usage: Option<TokenCounts>,
    /// The stream said it was complete (`message_stop`, `[DONE]`, `response.completed`).
    pub finished: bool,
    /// The stream reported an error event.
    pub error: Option<String>,
}

impl StreamUsage {
    pub fn new(protocol: AgentProtocol) -> StreamUsage {
        StreamUsage {
            protocol,
            reader: EventReader::default(),
            usage: None,
            finished: false,
            error: None,
        }
    }

    /// Watch the next chunk go by.
    pub fn feed(&mut self, chunk: &[u8]) {
        for event in self.reader.feed(chunk) {
            self.observe(&event);
        }
    }

    /// The usage of a stream that finished with its usage reported; `None` otherwise (cut off,
    /// an error event, or no usage): the try may have been billed for more than was seen.
    pub fn settled_usage(&self) -> Option<TokenCounts> {
        if self.finished && self.error.is_none() {
            self.usage
        } else {
            None
        }
    }

    fn observe(&mut self, event: &Event) {
        if event.data.trim() == "[DONE]" {
            self.finished = true;
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.name.as_str());
        match self.protocol {
            AgentProtocol::Anthropic => match kind {
                // The input side is reported at the start, the output count (cumulative) in
                // the deltas; later deltas may repeat input counts, which then win.
                "message_start" => {
                    if let Some(usage) = data.pointer("/message/usage") {
                        self.usage = Some(wire::anthropic_usage(usage, None));
                    }
                }
                "message_delta" => {
                    if let Some(usage) = data.get("usage") {
                        self.usage = Some(wire::anthropic_usage(usage, self.usage));
                    }
                }
                "message_stop" => self.finished = true,
                "error" => self.error = Some(error_text(&data)),
                _ => {}
            },
            AgentProtocol::OpenaiChat => {
                if let Some(usage) = data.get("usage").filter(|u| !u.is_null()) {
                    self.usage = wire::openai_chat_usage(usage);
                }
                if data.get("error").is_some() {
                    self.error = Some(error_text(&data));
                }
            }
            AgentProtocol::OpenaiResponses => match kind {
                "response.completed" => {
                    if let Some(usage) = data.pointer("/response/usage") {
                        self.usage = wire::openai_responses_usage(usage);
                    }
                    self.finished = true;
                }
                "response.failed" | "response.incomplete" | "error" => {
                    // An incomplete response (max tokens) still reports what it used.
                    if let Some(usage) = data.pointer("/response/usage") {
                        self.usage = wire::openai_responses_usage(usage);
                    }
                    if kind == "response.incomplete" {
                        self.finished = true;
                    } else {
                        self.error = Some(error_text(&data));
                    }
                }
                _ => {}
            },
        }
    }
}

fn error_text(data: &Value) -> String {
    data.pointer("/error/message")
        .or_else(|| data.pointer("/response/error/message"))
        .and_then(Value::as_str)
        .unwrap_or("the stream reported an error")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_however_the_bytes_are_cut() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\nevent: ping\r\ndata: {}\r\n\r\ndata: [DONE]\n\n";
        for cut in 1..stream.len() {
            let mut reader = EventReader::default();
            let mut events = reader.feed(&stream[..cut]);
            events.extend(reader.feed(&stream[cut..]));
            assert_eq!(
                events,
                vec![
                    Event {
                        name: "message_start".into(),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        name: "ping".into(),
                        data: "{}".into()
                    },
                    Event {
                        name: String::new(),
                        data: "[DONE]".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn anthropic_usage_takes_input_from_the_start_and_output_from_the_last_delta() {
        let mut usage = StreamUsage::new(AgentProtocol::Anthropic);
        usage.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":300,\"cache_creation_input_tokens\":40,\"output_tokens\":1}}}\n\n");
        usage.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n");
        assert_eq!(usage.settled_usage(), None, "not finished yet");
        usage.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":57}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!(
            usage.settled_usage(),
            Some(TokenCounts {
                input: 12,
                cache_read: 300,
                cache_write: 40,
                output: 57
            })
        );
    }

    #[test]
    fn an_error_event_leaves_the_usage_unsettled() {
        let mut usage = StreamUsage::new(AgentProtocol::Anthropic);
        usage.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!(usage.settled_usage(), None);
        assert_eq!(usage.error.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn openai_usage_comes_in_the_last_chunk_before_done() {
        let mut usage = StreamUsage::new(AgentProtocol::OpenaiChat);
        usage.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n");
        usage.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":300,\"prompt_tokens_details\":{\"cached_tokens\":1920}}}\n\ndata: [DONE]\n\n");
        assert_eq!(
            usage.settled_usage(),
            Some(TokenCounts {
                input: 86,
                cache_read: 1920,
                cache_write: 0,
                output: 300
            })
        );
    }
}
