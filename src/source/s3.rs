//! `--export s3://bucket/prefix`: the export's manifests and data files are downloaded (streamed
//! to disk) into a folder next to the checkpoint, then read as a local export.
//!
//! In two steps, so that no file is written before the run holds its lock: [`prepare`] lists
//! the objects below `prefix/` (refusing keys that would land outside the folder) and reads the
//! export's two manifests into memory (each refused past its cap, by its listed size before
//! it is fetched: `export::manifest_cap`), which gives the export's identity, and so the
//! checkpoint and lock names. It also refuses a download folder that exists and is not this
//! user's own with mode 0700 (`crate::private::check_own_dir`), before anything touches the
//! target. Then, under the lock, [`Download::run`] makes the folder (`own_dir`) and writes the
//! files (see `fetch`: runs on one host that share the folder take turns, and never replace a
//! copy another has checked).
//!
//! Only what the export reads is downloaded: the manifests of its folder and the data files
//! `manifest-files.json` lists (for a folder without manifests, the `.json` / `.json.gz` files
//! in it and in its `data/`, which is what a local folder is read as). Other objects under the
//! prefix are not fetched. Every shard of an export downloads all of them (a shard's segments
//! are known only later, once its checkpoint is read); siblings on one host share the copies.
//!
//! A file already there with the right size is kept when its MD5 is the manifest's
//! `md5Checksum` (else the object's ETag, when that is an MD5), so a resume fetches only what
//! is missing or damaged. Each data file checked (fetched, or found intact) is sealed
//! (`crate::downloads::seal`) from the handle that was checked, so the reader refuses it if it
//! is swapped or changed afterwards. Folders below the download folder are created 0700 and
//! files 0600, never through a symbolic link (see `crate::private`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;

use super::export::{self, Export, Tree};
use crate::cli::AwsArgs;
use crate::error::{Error, Result};

mod fetch;

/// `s3://bucket/prefix` split; None when `s` is not an s3 URL.
pub fn parse(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_end_matches('/').to_string()))
}

/// The S3 endpoint: the flag, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (an empty one
/// refused, see `endpoint_from`).
fn endpoint(flag: &Option<String>) -> Result<Option<String>> {
    super::endpoint_from(
        "--s3-endpoint-url",
        flag,
        &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
        &|k| std::env::var_os(k),
    )
}

fn s3_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Source {
        message: format!("S3: {what}: {e}"),
        retryable: false,
    }
}

/// An S3 client from the AWS settings (profile, region, credential chain) and the endpoint
/// (`--s3-endpoint-url`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL): the one exports and
/// an s3:// `--checkpoint-dir` use.
pub async fn client(args: &AwsArgs, s3_endpoint: &Option<String>) -> Result<Client> {
    let ep = endpoint(s3_endpoint)?;
    let shared = super::aws_config(args, ep.as_deref()).await?;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        // S3-compatible servers (moto, MinIO) want bucket names in the path.
        .force_path_style(ep.is_some())
        .build();
    Ok(Client::from_conf(conf))
}

/// One object of the export and the file it becomes.
#[derive(Debug, Clone)]
struct Object {
    key: String,
    path: PathBuf,
    size: u64,
    etag: Option<String>,
}

/// An `s3://` export listed and its manifests read, nothing written yet.
pub struct Download {
    /// The export as it will be on disk once [`Download::run`] has run.
    pub export: Export,
    client: Client,
    bucket: String,
    /// The download folder.
    dest: PathBuf,
    objects: Vec<Object>,
    /// The manifests as read by `prepare`: written as they were read.
    manifests: HashMap<PathBuf, String>,
}

/// List the export at `url` and read its manifests: what it holds and what it will be in `dest`.
pub async fn prepare(
    args: &AwsArgs,
    s3_endpoint: &Option<String>,
    url: &str,
    dest: &Path,
) -> Result<Download> {
    let (bucket, prefix) =
        parse(url).ok_or_else(|| Error::config(format!("{url}: expected s3://bucket/prefix")))?;
    let client = client(args, s3_endpoint).await?;
    let listed = list(&client, url, &bucket, &prefix, dest).await?;
    let no_texts = HashMap::new();
    let mut listing = Listing {
        sizes: listed.iter().map(|o| (o.path.clone(), o.size)).collect(),
        texts: &no_texts,
    };
    // The manifests of the export's folder, and no others.
    let mut manifests = HashMap::new();
    if let Some(dir) = export::find_manifest_dir(&listing, dest) {
        for name in export::MANIFESTS {
            let path = dir.join(name);
            if let Some(o) = listed.iter().find(|o| o.path == path) {
                let text = get_text(&client, &bucket, o).await?;
                manifests.insert(path, text);
            }
        }
    }
    listing.texts = &manifests;
    let export = export::open_in(&listing, dest, url)?;
    // What the export reads: its manifests and data files; nothing else is downloaded.
    let wanted: HashSet<&PathBuf> = export.files.iter().chain(manifests.keys()).collect();
    let objects = listed
        .iter()
        .filter(|o| wanted.contains(&o.path))
        .cloned()
        .collect();
    // A download folder someone else made is refused now, before anything touches the
    // target; the folder and its files are made by `Download::run`, under the lock.
    crate::private::check_own_dir(dest, fetch::HOLDS, fetch::INSTEAD)?;
    Ok(Download {
        export,
        client,
        bucket,
        dest: dest.to_path_buf(),
        objects,
        manifests,
    })
}

/// The objects below `prefix/` that belong to an export (manifests and data files). A key that
/// would be written outside `dest` is refused before anything is written.
async fn list(
    client: &Client,
    url: &str,
    bucket: &str,
    prefix: &str,
    dest: &Path,
) -> Result<Vec<Object>> {
    // `exports/app` is a folder: `exports/app-incr-1/...` is another export.
    let folder = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut objects = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&folder)
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
            let (Some(key), Some(size)) = (o.key(), o.size()) else {
                continue;
            };
            let rel = key.strip_prefix(&folder).unwrap_or(key);
            if rel.is_empty() || rel.ends_with('/') {
                // The folder itself, or a folder marker: nothing to write.
                continue;
            }
            if !export::stays_inside(rel) {
                return Err(Error::config(format!(
                    "s3://{bucket}/{key}: below the export's prefix this key is {rel:?}, which is \
                     absolute or has an empty, `.` or `..` part: written to disk it would land \
                     outside the download folder {}. Refused; nothing was downloaded. Remove or \
                     rename the object, or give the prefix of a clean export",
                    dest.display()
                )));
            }
            let name = rel.rsplit('/').next().unwrap_or(rel);
            if name.starts_with("manifest-")
                || name.ends_with(".json")
                || name.ends_with(".json.gz")
            {
                objects.push(Object {
                    key: key.to_string(),
                    path: dest.join(rel),
                    size: size.max(0) as u64,
                    etag: o.e_tag().map(|t| t.trim_matches('"').to_string()),
                });
            }
        }
    }
    if objects.is_empty() {
        return Err(Error::config(format!(
            "{url}: no export files under this prefix"
        )));
    }
    Ok(objects)
}

/// A manifest as text: refused past its cap, by its listed size before it is fetched and by
/// what is read (the object may have grown since it was listed).
/// `s3://bucket/key`, its body not yet read; a failure names the object.
async fn get_object(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
    client
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
        })
}

async fn get_text(client: &Client, bucket: &str, o: &Object) -> Result<String> {
    let key = &o.key;
    let what = format!("s3://{bucket}/{key}");
    let cap = export::manifest_cap(&o.path);
    export::check_manifest_size(&what, o.size, cap)?;
    let mut body = get_object(client, bucket, key).await?.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_err(&format!("read {what}"), e))?
    {
        bytes.extend_from_slice(&chunk);
        export::check_manifest_size(&what, bytes.len() as u64, cap)?;
    }
    String::from_utf8(bytes)
        .map_err(|e| Error::config(format!("{what}: a manifest that is not UTF-8 ({e})")))
}

/// The listed objects as the files they become (see [`export::Tree`]).
struct Listing<'a> {
    sizes: BTreeMap<PathBuf, u64>,
    texts: &'a HashMap<PathBuf, String>,
}

impl Tree for Listing<'_> {
    fn text(&self, path: &Path) -> Result<Option<String>> {
        Ok(self.texts.get(path).cloned())
    }
    fn size(&self, path: &Path) -> Option<u64> {
        self.sizes.get(path).copied()
    }
    fn dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .sizes
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .filter(|rel| rel.components().count() > 1)
            .filter_map(|rel| rel.components().next())
            .map(|c| dir.join(c))
            .collect();
        dirs.dedup();
        dirs
    }
    fn files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self
            .sizes
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            super::parse("s3://b/p/q/"),
            Some(("b".into(), "p/q".into()))
        );
        assert_eq!(super::parse("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(super::parse("/local/dir"), None);
    }

    #[test]
    fn a_listing_is_a_tree_of_the_files_it_becomes() {
        let texts = HashMap::new();
        let root = Path::new("/dl");
        let listing = Listing {
            sizes: [
                "AWSDynamoDB/1/data/a.json.gz",
                "AWSDynamoDB/1/data/b.json",
                "c.json",
            ]
            .iter()
            .map(|k| (root.join(k), 3))
            .collect(),
            texts: &texts,
        };
        assert_eq!(listing.dirs(root), [root.join("AWSDynamoDB")]);
        assert_eq!(
            listing.dirs(&root.join("AWSDynamoDB")),
            [root.join("AWSDynamoDB/1")]
        );
        assert_eq!(listing.files(root).expect("files"), [root.join("c.json")]);
        assert_eq!(listing.size(&root.join("c.json")), Some(3));
        assert_eq!(listing.size(&root.join("d.json")), None);
    }
}
