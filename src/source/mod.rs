//! Sources of items: the DynamoDB client and the segmented parallel scan.

pub mod export;
pub mod fast_scan;
pub mod s3;
pub mod scan;
pub mod stream;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::Builder as HttpBuilder;

use crate::cli::AwsArgs;
use crate::error::{Error, Result};

/// The DynamoDB client with what we resolved, for messages.
pub struct Source {
    pub client: Client,
    /// The same endpoint's DynamoDB Streams (for `--follow`).
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub endpoint: Option<String>,
    pub region: String,
    /// The access key ID requests are signed with (for DynamoDB Local's per-key tables).
    pub access_key_id: Option<String>,
}

/// The type of a key attribute, from the table's AttributeDefinitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyAttrType {
    S,
    N,
    B,
}

#[derive(Debug, Clone)]
pub struct KeyAttr {
    pub name: String,
    pub ty: KeyAttrType,
}

/// What DescribeTable tells us about the source table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub arn: String,
    /// Partition key first, then the sort key if any.
    pub key: Vec<KeyAttr>,
    /// Approximate: DynamoDB refreshes it about every six hours.
    pub item_count: u64,
    pub size_bytes: u64,
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

/// Endpoint from the flag, else the standard environment variables.
fn resolve_endpoint(flag: &Option<String>) -> Result<Option<String>> {
    endpoint_from(
        "--endpoint-url",
        flag,
        &["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"],
        &|k| std::env::var_os(k),
    )
}

/// An endpoint from its flag, else the first of `vars` that is set. An empty flag or variable
/// is refused (exit 2) rather than skipped: the AWS SDK reads the same variables itself and
/// panics on an empty one, and skipping it would silently fall back to the next.
pub(crate) fn endpoint_from(
    flag_name: &str,
    flag: &Option<String>,
    vars: &[&str],
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<String>> {
    let empty = |what: String| {
        Error::config(format!(
            "{what} is set but empty: give it an endpoint URL (http://127.0.0.1:8000 for \
             DynamoDB Local) or unset it to use AWS's endpoint"
        ))
    };
    if let Some(f) = flag {
        return match f.trim() {
            "" => Err(empty(flag_name.to_string())),
            _ => Ok(Some(f.clone())),
        };
    }
    for var in vars {
        match env(var) {
            Some(v) if v.to_string_lossy().trim().is_empty() => {
                return Err(empty(format!("the environment variable {var}")))
            }
            Some(v) => return Ok(Some(v.to_string_lossy().into_owned())),
            None => {}
        }
    }
    Ok(None)
}

/// The shared AWS configuration from the standard chain (profile, environment, SSO, IMDS ...),
/// with `endpoint` as the endpoint. On a loopback endpoint (DynamoDB Local, a local S3) missing
/// credentials and region are filled with dummies instead of failing.
pub async fn aws_config(args: &AwsArgs, endpoint: Option<&str>) -> Result<aws_config::SdkConfig> {
    let local = endpoint.is_some_and(is_loopback);
    let http = HttpBuilder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(p) = &args.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &args.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let shared = loader.load().await;
    let mut builder = shared.to_builder();
    if let Some(e) = endpoint {
        builder = builder.endpoint_url(e);
    }
    if shared.region().is_none() {
        if !local {
            return Err(Error::config(
                "no AWS region: pass --region, set AWS_REGION, or set one in the profile",
            ));
        }
        builder = builder.region(Region::new("us-east-1"));
    }
    let creds = match shared.credentials_provider() {
        Some(p) => {
            use aws_sdk_dynamodb::config::ProvideCredentials;
            p.provide_credentials()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        None => Err("no credentials provider".to_string()),
    };
    match creds {
        Ok(()) => {}
        Err(_) if local => {
            tracing::debug!("no AWS credentials found; using dummy ones for the loopback endpoint");
            builder = builder.credentials_provider(
                aws_sdk_dynamodb::config::SharedCredentialsProvider::new(Credentials::new(
                    // DynamoDB Local accepts any key made of letters and digits only.
                    "ddb2pglocal",
                    "ddb2pglocal",
                    None,
                    None,
                    "ddb2pg-dummy",
                )),
            );
        }
        Err(why) => {
            return Err(Error::config(format!(
                "no AWS credentials{}: tried the environment (AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the profile in ~/.aws/config and \
                 ~/.aws/credentials (role assumption, SSO, credential_process), web identity, \
                 ECS and EC2 instance metadata ({why}); pass --profile, run `aws sso login`, \
                 or set the variables",
                match &args.profile {
                    Some(p) => format!(" for profile {p:?}"),
                    None => String::new(),
                }
            )))
        }
    }
    Ok(builder.build())
}

impl Source {
    /// A DynamoDB client from the standard AWS chain (see `aws_config`), retrying in adaptive
    /// mode: backoff with jitter and a client-side rate limiter shared by all segments.
    pub async fn connect(args: &AwsArgs) -> Result<Source> {
        let endpoint = resolve_endpoint(&args.endpoint_url)?;
        let shared = aws_config(args, endpoint.as_deref()).await?;
        let retry = aws_config::retry::RetryConfig::adaptive()
            .with_max_attempts(10)
            .with_initial_backoff(std::time::Duration::from_millis(100));
        let conf = aws_sdk_dynamodb::config::Builder::from(&shared)
            .retry_config(retry.clone())
            .build();
        // Streams: a few quick attempts, then the follower's own retries (per shard, bounded by
        // --pg-retry-for, reported); no client-side rate limiter shared by every shard's reader,
        // which one throttled shard would slow down for all.
        let streams_retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(100));
        // An attempt that hangs (a network that connects but never answers) times out and is
        // retried like any other failure.
        let streams_timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(std::time::Duration::from_secs(20))
            .build();
        let streams = aws_sdk_dynamodbstreams::config::Builder::from(&shared)
            .retry_config(streams_retry)
            .timeout_config(streams_timeouts)
            .build();
        let access_key_id = match shared.credentials_provider() {
            Some(p) => {
                use aws_sdk_dynamodb::config::ProvideCredentials;
                p.provide_credentials()
                    .await
                    .ok()
                    .map(|c| c.access_key_id().to_string())
            }
            None => None,
        };
        Ok(Source {
            client: Client::from_conf(conf),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams),
            region: shared.region().map(|r| r.to_string()).unwrap_or_default(),
            endpoint,
            access_key_id,
        })
    }

    /// On a loopback endpoint (DynamoDB Local): unless started with -sharedDb, it keeps one set
    /// of tables per access key ID and region, so a table made with other ones is not seen.
    fn local_tables_hint(&self) -> String {
        if !self.endpoint.as_deref().is_some_and(is_loopback) {
            return String::new();
        }
        format!(
            ". DynamoDB Local (unless started with -sharedDb) keeps separate tables per access \
             key ID and region: ddb2pg signed with key ID {:?} in region {:?}; use the key and \
             region the table was created with (AWS_ACCESS_KEY_ID, AWS_REGION or --region), or \
             start DynamoDB Local with -sharedDb",
            self.access_key_id.as_deref().unwrap_or("(none)"),
            self.region
        )
    }

    /// Where the source is, for messages.
    pub fn describe_location(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} (region {})", without_userinfo(e), self.region),
            None => format!("region {}", self.region),
        }
    }

    /// DescribeTable: key schema, types, approximate size.
    pub async fn describe(&self, table: &str) -> Result<TableInfo> {
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if not_found {
                    Error::config(format!(
                        "table {table:?} not found at {}: check --table, --region and --endpoint-url{}",
                        self.describe_location(),
                        self.local_tables_hint()
                    ))
                } else {
                    Error::config(format!(
                        "cannot describe table {table:?} at {}: {}",
                        self.describe_location(),
                        sdk_message(&e)
                    ))
                }
            })?;
        let desc = out.table.ok_or_else(|| {
            Error::config(format!("DescribeTable returned no table for {table:?}"))
        })?;
        let defs = desc.attribute_definitions.unwrap_or_default();
        let mut key = Vec::new();
        let mut schema = desc.key_schema.unwrap_or_default();
        schema.sort_by_key(|k| if k.key_type == KeyType::Hash { 0 } else { 1 });
        for k in schema {
            let def = defs
                .iter()
                .find(|d| d.attribute_name == k.attribute_name)
                .ok_or_else(|| {
                    Error::config(format!(
                        "key attribute {:?} has no AttributeDefinition",
                        k.attribute_name
                    ))
                })?;
            let ty = match def.attribute_type {
                ScalarAttributeType::S => KeyAttrType::S,
                ScalarAttributeType::N => KeyAttrType::N,
                ScalarAttributeType::B => KeyAttrType::B,
                ref other => {
                    return Err(Error::config(format!(
                        "key attribute {:?} has unsupported type {other:?}",
                        k.attribute_name
                    )))
                }
            };
            key.push(KeyAttr {
                name: k.attribute_name,
                ty,
            });
        }
        if key.is_empty() {
            return Err(Error::config(format!(
                "table {table:?} reports no key schema"
            )));
        }
        Ok(TableInfo {
            name: table.to_string(),
            arn: desc.table_arn.unwrap_or_else(|| table.to_string()),
            key,
            item_count: desc.item_count.unwrap_or(0).max(0) as u64,
            size_bytes: desc.table_size_bytes.unwrap_or(0).max(0) as u64,
        })
    }
}

/// A readable one-line message from an SDK error, with the service's code when there is one.
pub fn sdk_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("service error"),
                e.message().unwrap_or("(no message)")
            )
        }
        SdkError::DispatchFailure(d) => format!(
            "cannot reach the endpoint: {}",
            d.as_connector_error().map_or_else(
                || "the request could not be sent".to_string(),
                |c| root_cause(c)
            )
        ),
        SdkError::TimeoutError(_) => "cannot reach the endpoint: timed out".to_string(),
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// The innermost error of a chain, on one line (the SDK's outer layers only say "dispatch
/// failure" in Debug form).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "no answer".to_string()
    } else {
        line.to_string()
    }
}

/// An endpoint URL without any `user:password@` part, for messages.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// Whether an SDK error is DynamoDB refusing a call for throughput.
pub fn sdk_throttled<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(s) if matches!(
        s.err().code(),
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
        )
    ))
}

/// Whether an SDK error is worth retrying after the SDK's own retries gave up.
pub fn sdk_retryable<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{endpoint_from, is_loopback, without_userinfo};

    #[test]
    fn an_empty_endpoint_is_refused_not_skipped() {
        let vars = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"];
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let pick = |flag: Option<&str>, e: &dyn Fn(&str) -> Option<std::ffi::OsString>| {
            endpoint_from("--endpoint-url", &flag.map(String::from), &vars, e)
        };
        let none = env(&[]);
        assert_eq!(pick(None, &none).ok(), Some(None));
        let both = env(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://a"),
            ("AWS_ENDPOINT_URL", "http://b"),
        ]);
        assert_eq!(pick(None, &both).ok(), Some(Some("http://a".into())));
        assert_eq!(
            pick(Some("http://f"), &both).ok(),
            Some(Some("http://f".into()))
        );
        let general = env(&[("AWS_ENDPOINT_URL", "http://b")]);
        assert_eq!(pick(None, &general).ok(), Some(Some("http://b".into())));
        let empty = env(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", ""),
            ("AWS_ENDPOINT_URL", "http://b"),
        ]);
        let err = pick(None, &empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("AWS_ENDPOINT_URL_DYNAMODB is set but empty"),
            "{err}"
        );
        let err = pick(Some(" "), &none)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--endpoint-url is set but empty"), "{err}");
    }

    #[test]
    fn endpoints_are_shown_without_credentials() {
        assert_eq!(
            without_userinfo("http://u:s3cr@t@127.0.0.1:8000/x@y"),
            "http://***@127.0.0.1:8000/x@y"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8000"),
            "http://127.0.0.1:8000"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8000"));
        assert!(is_loopback("http://localhost:8000/"));
        assert!(is_loopback("http://[::1]:8000"));
        assert!(!is_loopback("https://dynamodb.eu-west-1.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.1:8000"));
    }
}
