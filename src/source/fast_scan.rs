//! Scan responses parsed by ddb2pg's own DynamoDB-JSON parser (`value::parse_scan_items`,
//! the seeds exports use) instead of the SDK's deserializer, which took about half of
//! ddb2pg's CPU on the table path. Everything else stays the SDK's: signing, credentials,
//! endpoint, retries and the adaptive rate limiter, timeouts, error classification.
//!
//! How: an interceptor, added to each Scan call, puts a response deserializer into the call's
//! config bag (`interceptor_state`, read by the orchestrator after the body is loaded). For a
//! 2xx response it parses the loaded body; for an error response, or a body the fast parser
//! declines (see `value::scan_response`), it hands the response to the SDK's own Scan
//! deserializer, taken from the SDK's `Scan` runtime plugin, so the outcome is the SDK's.
//!
//! Each of migrate's Scan calls brings its own `ParseBody` (`FastScan::with`), which takes the
//! items as they are parsed (and transforms each one then, see `scan::ScanPages`) and returns
//! the rest of the response. Without one (`FastScan::new` alone: the tests that compare the
//! parsers), the parsed items are returned in the `ScanOutput`, as the SDK would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimePlugin};
use aws_sdk_dynamodb::operation::scan::Scan;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Error as OpError, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::config_bag::FrozenLayer;

use aws_sdk_dynamodb::operation::scan::ScanOutput;

use crate::value::{parse_scan_response, Declined};

/// What a Scan call makes of a 2xx body (see the module's documentation).
pub trait ParseBody: Send + Sync + std::fmt::Debug {
    /// Parse a 2xx `body`; the output is what the SDK's call returns. `Err`: declined, the
    /// SDK's deserializer parses the body instead (and its output holds the items).
    fn parse(&self, body: &[u8]) -> Result<ScanOutput, Declined>;
    /// Forget what an earlier attempt's body made: called at each attempt's response, so that
    /// only the body the call returns with counts.
    fn clear(&self);
}

/// How many Scan responses each parser read.
#[derive(Debug, Default)]
pub struct Counts {
    /// Parsed by ddb2pg's parser.
    pub fast: AtomicU64,
    /// 2xx responses the fast parser declined, parsed by the SDK.
    pub declined: AtomicU64,
}

/// The interceptor to add to a Scan call (`.customize().interceptor(..)`).
#[derive(Debug, Clone)]
pub struct FastScan(ScanDeserializer);

#[derive(Debug, Clone)]
struct ScanDeserializer {
    shared: Arc<Inner>,
    /// None: `parse_scan_response`, the items in the output.
    parse: Option<Arc<dyn ParseBody>>,
}

#[derive(Debug)]
struct Inner {
    /// The SDK's Scan layer, holding its response deserializer (the fallback).
    sdk: FrozenLayer,
    counts: Counts,
}

impl FastScan {
    /// None when the SDK's Scan plugin holds no deserializer (a future SDK): then Scan calls
    /// keep the SDK's parser.
    pub fn new() -> Option<FastScan> {
        let sdk = Scan::new().config()?;
        sdk.load::<SharedResponseDeserializer>()?;
        Some(FastScan(ScanDeserializer {
            shared: Arc::new(Inner {
                sdk,
                counts: Counts::default(),
            }),
            parse: None,
        }))
    }

    /// This interceptor, for one call whose 2xx bodies `parse` reads.
    pub fn with(&self, parse: Arc<dyn ParseBody>) -> FastScan {
        FastScan(ScanDeserializer {
            shared: self.0.shared.clone(),
            parse: Some(parse),
        })
    }

    /// The one the table path shares (its counts are the run's). None with the environment
    /// variable `DDB2PG_SDK_SCAN_PARSER=1` (a switch for tests and measurements: the SDK
    /// parses every Scan body, and its items are prepared by their writer).
    pub fn shared() -> Option<&'static FastScan> {
        static SHARED: OnceLock<Option<FastScan>> = OnceLock::new();
        SHARED
            .get_or_init(|| match std::env::var("DDB2PG_SDK_SCAN_PARSER") {
                Ok(v) if v == "1" => None,
                _ => FastScan::new(),
            })
            .as_ref()
    }

    /// Log (-v) how many Scan bodies each parser read in this run; warn when the SDK's had
    /// to parse some (slower, same rows).
    pub fn report() {
        let Some(fast) = FastScan::shared() else {
            return;
        };
        let declined = fast.counts().declined.load(Ordering::Relaxed);
        let taken = fast.counts().fast.load(Ordering::Relaxed);
        tracing::info!(
            "Scan responses: {taken} parsed by ddb2pg's parser, {declined} left to the SDK's"
        );
        if declined > 0 {
            tracing::warn!(
                "{declined} Scan responses were unusual for ddb2pg's parser (-vv says why) and \
                 were parsed by the SDK's, which is slower; the rows are the same"
            );
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.0.shared.counts
    }
}

impl Intercept for FastScan {
    fn name(&self) -> &'static str {
        "ddb2pg::FastScan"
    }

    /// Once per call (not per attempt): the deserializer stays for every retry.
    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(self.0.clone()));
        Ok(())
    }
}

impl DeserializeResponse for ScanDeserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<OpError>> {
        let inner = &self.shared;
        if let Some(p) = &self.parse {
            p.clear();
        }
        if response.status().is_success() {
            if let Some(body) = response.body().bytes() {
                let parsed = match &self.parse {
                    Some(p) => p.parse(body),
                    None => parse_scan_response(body),
                };
                match parsed {
                    Ok(out) => {
                        inner.counts.fast.fetch_add(1, Ordering::Relaxed);
                        return Ok(Output::erase(out));
                    }
                    Err(why) => {
                        inner.counts.declined.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("Scan response left to the SDK's parser: {why}");
                    }
                }
            }
        }
        match inner.sdk.load::<SharedResponseDeserializer>() {
            Some(sdk) => sdk.deserialize_nonstreaming_with_config(response, cfg),
            // `new` checked it is there.
            None => Err(OrchestratorError::other(
                "internal error: the SDK's Scan deserializer is gone",
            )),
        }
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
