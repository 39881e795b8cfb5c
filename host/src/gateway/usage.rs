//! Each provider's usage report, normalised once into the ledger's four disjoint counts.

use crate::store::TokenCounts;

/// A usage report that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("usage says {cached} cached tokens out of {prompt} prompt tokens")]
    CachedExceedsPrompt { prompt: u64, cached: u64 },
}

/// OpenAI Chat Completions `usage`: `prompt_tokens` already contains
/// `prompt_tokens_details.cached_tokens`; `completion_tokens` contains reasoning tokens.
/// OpenAI does not bill cache writes separately.
pub fn from_openai(
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: Option<u64>,
) -> Result<TokenCounts, UsageError> {
    let cached = cached_tokens.unwrap_or(0);
    let input = prompt_tokens
        .checked_sub(cached)
        .ok_or(UsageError::CachedExceedsPrompt {
            prompt: prompt_tokens,
            cached,
        })?;
    Ok(TokenCounts {
        input,
        cache_read: cached,
        cache_write: 0,
        output: completion_tokens,
    })
}

/// Anthropic Messages `usage`: `input_tokens` excludes the cache; reads and writes are
/// reported beside it.
pub fn from_anthropic(
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
) -> TokenCounts {
    TokenCounts {
        input: input_tokens,
        cache_read: cache_read_input_tokens.unwrap_or(0),
        cache_write: cache_creation_input_tokens.unwrap_or(0),
        output: output_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_cached_tokens_are_taken_out_of_the_prompt() {
        // 2 006 prompt tokens of which 1 920 cached, 300 completion tokens.
        assert_eq!(
            from_openai(2_006, 300, Some(1_920)),
            Ok(TokenCounts {
                input: 86,
                cache_read: 1_920,
                cache_write: 0,
                output: 300
            })
        );
        assert_eq!(from_openai(10, 5, None).map(|u| u.input), Ok(10));
        assert!(from_openai(10, 5, Some(11)).is_err());
    }

    #[test]
    fn anthropic_counts_are_already_disjoint() {
        let usage = from_anthropic(12, 40, Some(1_000), Some(200));
        assert_eq!(usage.total_input(), 1_212);
        assert_eq!(usage.cache_write, 200);
    }
}
