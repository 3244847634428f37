//! `--export s3://bucket/prefix`: the export's manifests and data files are downloaded (streamed
//! to disk, skipping files already there with the right size, so a resume does not fetch them
//! again) into a folder next to the checkpoint, then read as a local export. Folders are
//! created 0700 and files 0600, never through a symbolic link (see `crate::private`).

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

use crate::cli::AwsArgs;
use crate::error::{Error, Result};

/// `s3://bucket/prefix` split; None when `s` is not an s3 URL.
pub fn parse(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_end_matches('/').to_string()))
}

/// The S3 endpoint: the flag, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL.
fn endpoint(flag: &Option<String>) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|s| !s.is_empty())
}

fn s3_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Source {
        message: format!("S3: {what}: {e}"),
        retryable: false,
    }
}

/// Download every object under the prefix that belongs to the export (manifests and data
/// files) into `dest`, keeping the key layout below the prefix. Returns `dest`.
pub async fn download(
    args: &AwsArgs,
    s3_endpoint: &Option<String>,
    url: &str,
    dest: &Path,
) -> Result<PathBuf> {
    let (bucket, prefix) =
        parse(url).ok_or_else(|| Error::config(format!("{url}: expected s3://bucket/prefix")))?;
    let ep = endpoint(s3_endpoint);
    let shared = super::aws_config(args, ep.as_deref()).await?;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        // S3-compatible servers (moto, MinIO) want bucket names in the path.
        .force_path_style(ep.is_some())
        .build();
    let client = Client::from_conf(conf);
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::config(format!(
                "cannot list {url}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))
        })?;
        for o in page.contents() {
            if let (Some(k), Some(size)) = (o.key(), o.size()) {
                let name = k.rsplit('/').next().unwrap_or(k);
                if name.starts_with("manifest-")
                    || name.ends_with(".json")
                    || name.ends_with(".json.gz")
                {
                    keys.push((k.to_string(), size.max(0) as u64));
                }
            }
        }
    }
    if keys.is_empty() {
        return Err(Error::config(format!(
            "{url}: no export files under this prefix"
        )));
    }
    for (key, size) in keys {
        let rel = key
            .strip_prefix(&prefix)
            .unwrap_or(&key)
            .trim_start_matches('/');
        let path = dest.join(rel);
        if std::fs::metadata(&path)
            .map(|m| m.len() == size)
            .unwrap_or(false)
        {
            continue;
        }
        if let Some(dir) = path.parent() {
            crate::private::dir(dir)?;
        }
        fetch(&client, &bucket, &key, &path).await?;
    }
    Ok(dest.to_path_buf())
}

/// Stream one object to `path` (via a tmp file, renamed when complete).
async fn fetch(client: &Client, bucket: &str, key: &str, path: &Path) -> Result<()> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                &format!("get s3://{bucket}/{key}"),
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let tmp = path.with_extension("part");
    let mut f = tokio::fs::File::from_std(crate::private::create(&tmp)?);
    let mut body = out.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_err(&format!("read s3://{bucket}/{key}"), e))?
    {
        f.write_all(&chunk)
            .await
            .map_err(|e| Error::file(&tmp, e))?;
    }
    f.sync_all().await.map_err(|e| Error::file(&tmp, e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| Error::file(path, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn s3_urls() {
        assert_eq!(
            super::parse("s3://b/p/q/"),
            Some(("b".into(), "p/q".into()))
        );
        assert_eq!(super::parse("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(super::parse("/local/dir"), None);
    }
}
