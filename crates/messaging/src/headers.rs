//! The one codec of a message's Kafka headers: what the relay writes ([`encode`]) is what the
//! consumers and the projections read ([`decode`]). The header names are the contract's
//! ([`contracts::headers`]); the metadata they carry is [`Metadata`].
//!
//! Reading is strict where a message cannot be applied without the value (`message-id`,
//! `message-type`, `schema-version`, `correlation-id`, `occurred-at`) and lenient for what is
//! optional (`causation-id`, `traceparent`). A header that occurs twice counts by its last
//! occurrence, as in Kafka's own lookup. Errors are the reasons a dead letter carries.

use chrono::{DateTime, SecondsFormat, Utc};
use contracts::headers as h;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use uuid::Uuid;

use crate::outbox::Metadata;

/// Headers as a record carries them: in order, a name may repeat, a value may be absent.
pub type Pairs = [(String, Option<Vec<u8>>)];

/// What the headers of a message say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub message_type: String,
    pub schema_version: u16,
    pub metadata: Metadata,
}

/// The headers of a message of `message_type` at `schema_version` with `metadata`.
pub fn encode(message_type: &str, schema_version: u16, metadata: &Metadata) -> OwnedHeaders {
    let text = |key, value: &str| -> (&'static str, String) { (key, value.to_owned()) };
    let mut pairs = vec![
        text(h::MESSAGE_ID, &metadata.message_id.to_string()),
        text(h::MESSAGE_TYPE, message_type),
        text(h::SCHEMA_VERSION, &schema_version.to_string()),
        text(h::CORRELATION_ID, &metadata.correlation_id.to_string()),
        text(
            h::OCCURRED_AT,
            &metadata
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        ),
    ];
    if let Some(causation) = metadata.causation_id {
        pairs.push(text(h::CAUSATION_ID, &causation.to_string()));
    }
    if let Some(traceparent) = &metadata.traceparent {
        pairs.push(text(h::TRACEPARENT, traceparent));
    }
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}

/// Reads what [`encode`] wrote. `Err` is why the message is poison.
pub fn decode(headers: &Pairs) -> Result<Decoded, String> {
    // The message id first: a record without any header is reported as missing it.
    let metadata = Metadata {
        message_id: required(headers, h::MESSAGE_ID, Uuid::parse_str)?,
        correlation_id: required(headers, h::CORRELATION_ID, Uuid::parse_str)?,
        causation_id: optional(headers, h::CAUSATION_ID, Uuid::parse_str)?,
        traceparent: optional(headers, h::TRACEPARENT, |s| {
            Ok::<_, std::convert::Infallible>(s.to_owned())
        })?,
        occurred_at: required(headers, h::OCCURRED_AT, |s| {
            DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
        })?,
    };
    Ok(Decoded {
        message_type: required(headers, h::MESSAGE_TYPE, |s| {
            Ok::<_, std::convert::Infallible>(s.to_owned())
        })?,
        schema_version: required(headers, h::SCHEMA_VERSION, str::parse::<u16>)?,
        metadata,
    })
}

/// A received message's headers, copied out of librdkafka.
pub fn pairs_of(message: &impl Message) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

fn required<T, E: std::fmt::Display>(
    headers: &Pairs,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, String> {
    optional(headers, name, parse)?.ok_or_else(|| format!("missing header {name}"))
}

fn optional<T, E: std::fmt::Display>(
    headers: &Pairs,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, String> {
    let Some((_, Some(value))) = headers.iter().rev().find(|(k, _)| k == name) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value).map_err(|_| format!("header {name} is not UTF-8"))?;
    parse(text)
        .map(Some)
        .map_err(|e| format!("invalid header {name} {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(causation: bool) -> Metadata {
        Metadata {
            message_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: causation.then(Uuid::now_v7),
            traceparent: causation
                .then(|| "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            // Microseconds: what the header keeps.
            occurred_at: DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123456Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap(),
        }
    }

    fn as_pairs(headers: &OwnedHeaders) -> Vec<(String, Option<Vec<u8>>)> {
        headers
            .iter()
            .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_message() {
        for causation in [false, true] {
            let metadata = metadata(causation);
            let decoded = decode(&as_pairs(&encode("OrderPlaced", 2, &metadata))).unwrap();
            assert_eq!(
                decoded,
                Decoded {
                    message_type: "OrderPlaced".to_owned(),
                    schema_version: 2,
                    metadata,
                }
            );
        }
    }

    #[test]
    fn a_missing_or_invalid_header_is_the_reason_the_message_is_poison() {
        let pairs = as_pairs(&encode("OrderPlaced", 2, &metadata(false)));
        let without_id: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| k != h::MESSAGE_ID)
            .cloned()
            .collect();
        assert_eq!(
            decode(&without_id).unwrap_err(),
            "missing header message-id"
        );
        let mut bad = pairs.clone();
        bad.push((h::SCHEMA_VERSION.to_owned(), Some(b"one".to_vec())));
        let err = decode(&bad).unwrap_err();
        assert!(err.starts_with("invalid header schema-version"), "{err}");
        let mut not_utf8 = pairs;
        not_utf8.push((h::MESSAGE_TYPE.to_owned(), Some(vec![0xff])));
        assert_eq!(
            decode(&not_utf8).unwrap_err(),
            "header message-type is not UTF-8"
        );
    }
}
