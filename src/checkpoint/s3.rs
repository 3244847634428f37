//! `--checkpoint-dir s3://bucket/prefix`: the checkpoint, lock and rejects of a run are objects
//! under `prefix/`, so a shard started again on another machine (a replaced pod, a retried
//! array child) resumes where it stopped.
//!
//! Every write is a whole-object PUT, atomic on S3: a new object with `If-None-Match: *`, a
//! replacement with `If-Match: <ETag>` of the version this process read or wrote last. A
//! refused write (412) means another process changed it: the run stops (exit 1) rather than
//! overwrite it. The lock is a lease ([`super::lock`]) renewed in the background.
//!
//! The rejects file is appended to locally (in a private folder under the temp directory); in
//! S3 it is a folder of numbered parts ([`parts`]): before each checkpoint write the lines
//! that checkpoint counts and S3 does not hold yet are PUT as the next part, so the bytes
//! uploaded add up to the file's length. A run fetches the parts first (in pieces, bounded
//! memory), and removes its local copy when it ends ([`Storage::keeps_copies`]).
//!
//! The S3 calls run on a runtime of their own (one thread), so they can be made from
//! synchronous code (the checkpoint flush) and from async code alike.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use lease::Fence;

use super::lock::{Found, Lease};
use super::now_secs;
use super::storage::{Held, LockState, Names, Storage, Tag};
use crate::cli::AwsArgs;
use crate::error::{Error, Result};

mod lease;
mod parts;

/// What a PUT sends.
enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`, read in pieces.
    Range(PathBuf, u64, u64),
}

/// The largest checkpoint read (a million segments with long cursors stay below it).
const CHECKPOINT_LIMIT: u64 = 1 << 30;
/// The largest lock read (a lease is a few hundred bytes).
const LOCK_LIMIT: u64 = 64 << 10;

pub struct S3Dir {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    /// Whether this process may still write (see [`Fence`]).
    fence: Arc<Fence>,
    /// The parts of each copied file (the rejects) as this process fetched or published them
    /// last: a publish adds the next one only if no other process did (see [`parts`]).
    copies: Mutex<std::collections::HashMap<String, Vec<parts::Part>>>,
}

/// A failed S3 call (exit 1), named as such (an `Error::Source` would say "DynamoDB").
fn s3_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::file(format!("S3: {what}"), e)
}

/// The HTTP status of a failed call, when the server answered.
fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The error of a call, with the server's code and message (the SDK's Display says only
/// "service error").
fn detail<E: std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let mut text = err.to_string();
            if let Some(src) = std::error::Error::source(err) {
                text.push_str(&format!(": {src}"));
            }
            text
        }
        other => format!(
            "{other}: {}",
            std::error::Error::source(other).map_or(String::new(), |s| s.to_string())
        ),
    }
}

impl S3Dir {
    /// Every object whose key starts with `folder` (`shallow`: not below a further `/`),
    /// page after page; `shown` names the place in an error.
    fn objects(
        &self,
        folder: &str,
        shallow: bool,
        shown: &str,
    ) -> Result<Vec<aws_sdk_s3::types::Object>> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        let (folder, shown) = (folder.to_string(), shown.to_string());
        self.block(async move {
            let mut found = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&folder)
                    .set_delimiter(shallow.then(|| "/".to_string()))
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| s3_err(&format!("list {shown}"), detail(&e)))?;
                found.extend(out.contents().iter().cloned());
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            Ok(found)
        })?
    }

    pub fn open(url: &str, aws: &AwsArgs, s3_endpoint: &Option<String>) -> Result<S3Dir> {
        let (bucket, prefix) = crate::source::s3::parse(url).ok_or_else(|| {
            Error::config(format!(
                "--checkpoint-dir {url}: expected s3://bucket/prefix"
            ))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ddb2pg-s3-checkpoint")
            .enable_all()
            .build()
            .map_err(|e| Error::config(format!("cannot start the S3 checkpoint runtime: {e}")))?;
        let (aws, ep) = (aws.clone(), s3_endpoint.clone());
        let client = match on(
            &rt,
            async move { crate::source::s3::client(&aws, &ep).await },
        ) {
            Ok(c) => c,
            Err(e) => {
                // Dropped here, inside the caller's async context, the runtime would panic.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let dir = S3Dir {
            rt: Some(rt),
            client,
            bucket,
            prefix,
            url: url.trim_end_matches('/').to_string(),
            fence: Arc::new(Fence::default()),
            copies: Mutex::new(std::collections::HashMap::new()),
        };
        Ok(dir)
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn block<F>(&self, f: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        match &self.rt {
            Some(rt) => Ok(on(rt, f)),
            None => Err(Error::config("internal error: the S3 runtime is gone")),
        }
    }

    /// GET: the bytes and ETag, or None (404). An object past `limit` bytes is refused
    /// (a damaged or foreign object must not take the memory a run needs).
    fn get(&self, name: &str, limit: u64) -> Result<Option<(Vec<u8>, String)>> {
        let shown = self.show(name);
        let object = self.object(name);
        self.block(async move {
            let Some(mut out) = object.await? else {
                return Ok(None);
            };
            let etag = out.e_tag().unwrap_or_default().to_string();
            let too_big = || {
                Error::config(format!(
                    "{shown} is larger than {limit} bytes: not a document ddb2pg wrote; remove \
                     it (or use --restart) if no run is active"
                ))
            };
            if out.content_length().is_some_and(|n| n as u64 > limit) {
                return Err(too_big());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = out.body.next().await {
                let chunk = chunk.map_err(|e| s3_err(&format!("read {shown}"), e))?;
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Err(too_big());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some((bytes, etag)))
        })?
    }

    /// The GetObject of `name` (None: 404), its body not read yet.
    fn object(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<GetObjectOutput>>> + Send + 'static {
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(name));
        let shown = self.show(name);
        async move {
            match client.get_object().bucket(&bucket).key(&key).send().await {
                Ok(o) => Ok(Some(o)),
                Err(e) if status(&e) == Some(404) => Ok(None),
                Err(e) => Err(s3_err(&format!("read {shown}"), detail(&e))),
            }
        }
    }

    /// Conditional PUT; `Ok(Err(412))`-like: `Ok(None)` when the condition failed.
    fn put(&self, name: &str, bytes: &[u8], expect: &Tag) -> Result<Option<String>> {
        self.put_from(name, Body::Bytes(bytes.to_vec()), expect)
    }

    /// Conditional PUT of `body` (a file is read in pieces, never whole).
    fn put_from(&self, name: &str, body: Body, expect: &Tag) -> Result<Option<String>> {
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(name));
        let shown = self.show(name);
        let expect = expect.clone();
        self.block(async move {
            let body = match body {
                Body::Bytes(b) => ByteStream::from(b),
                Body::Range(p, offset, len) => ByteStream::read_from()
                    .path(&p)
                    .offset(offset)
                    .length(aws_sdk_s3::primitives::Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| Error::file(&p, e))?,
            };
            let mut req = client.put_object().bucket(&bucket).key(&key).body(body);
            req = match &expect {
                Tag::Absent => req.if_none_match("*"),
                Tag::ETag(e) => req.if_match(e),
                Tag::Local => req,
            };
            match req.send().await {
                Ok(o) => Ok(Some(o.e_tag().unwrap_or_default().to_string())),
                // 412: the condition failed; 409: a concurrent conditional write won.
                Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(None),
                Err(e) => Err(s3_err(&format!("write {shown}"), detail(&e))),
            }
        })?
    }

    fn delete(&self, name: &str) -> Result<()> {
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(name));
        let shown = self.show(name);
        self.block(async move {
            match client
                .delete_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if status(&e) == Some(404) => Ok(()),
                Err(e) => Err(s3_err(&format!("remove {shown}"), detail(&e))),
            }
        })?
    }
}

/// Run `f` to completion on `rt` from any thread, async or not: on a thread of its own, so
/// that no runtime is blocked from inside.
fn on<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let handle = rt.handle();
    std::thread::scope(|s| {
        let t = s.spawn(|| handle.block_on(f));
        match t.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

impl Drop for S3Dir {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context would panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Storage for S3Dir {
    /// A copied file (`*.jsonl`, the rejects) is the folder of its parts.
    fn show(&self, name: &str) -> String {
        match name.ends_with(".jsonl") {
            true => format!("{}/{}", self.url, parts::folder(name)),
            false => format!("{}/{name}", self.url),
        }
    }

    fn read(&self, name: &str) -> Result<Option<(Vec<u8>, Tag)>> {
        Ok(self
            .get(name, CHECKPOINT_LIMIT)?
            .map(|(b, e)| (b, Tag::ETag(e))))
    }

    fn read_small(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.get(name, limit)?.map(|(b, _)| b))
    }

    fn write(&self, name: &str, bytes: &[u8], expect: &Tag) -> Result<Tag> {
        self.fence.check(&self.show(name))?;
        match self.put(name, bytes, expect)? {
            Some(etag) => Ok(Tag::ETag(etag)),
            None => Err(Error::file(
                self.show(name),
                "changed by another process since this run wrote it (conditional write refused): \
                 two runs on one shard? This one stops; the stored checkpoint stays valid",
            )),
        }
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.delete(name)
    }

    /// Only copied files (the rejects) are renamed: their parts, copied inside S3.
    fn rename(&self, from: &str, to: &str) -> Result<bool> {
        self.rename_parts(from, to)
    }

    fn list(&self) -> Result<Vec<String>> {
        let folder = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut names: Vec<String> = self
            .objects(&folder, true, &self.url)?
            .iter()
            .filter_map(|o| o.key()?.strip_prefix(&folder).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn lock(&self, name: &str, lease: Duration) -> Result<Box<dyn Held>> {
        self.take(name, lease)
    }

    fn still_held(&self, name: &str) -> Result<()> {
        self.fence.check(&self.show(name))
    }

    fn lock_state(&self, name: &str) -> LockState {
        match self.read_lease(name) {
            Ok(Some((l, _))) => match Lease::found(Some(&l), now_secs()) {
                Found::Held { holder, left_s } => LockState {
                    running: true,
                    holder: Some(holder),
                    lease_left_s: Some(left_s),
                    problem: None,
                },
                found => LockState {
                    running: false,
                    holder: Some(l.holder),
                    lease_left_s: None,
                    problem: match found {
                        Found::Invalid { why, .. } => {
                            Some(lease::not_ddb2pgs(&why, &self.show(name)))
                        }
                        _ => None,
                    },
                },
            },
            _ => LockState::default(),
        }
    }

    /// `<temp dir>/ddb2pg-s3-u<uid>-<12 hex of the URL's SHA-256>`: this user's own (the uid
    /// in the name keeps two users of one machine apart), created 0700 or refused when someone
    /// else made it or it is open to others (see `crate::private::own_dir`).
    fn local_dir(&self) -> Result<PathBuf> {
        use sha2::{Digest, Sha256};
        let h = super::hex(&Sha256::digest(self.url.as_bytes()));
        let uid = crate::private::uid();
        let dir = std::env::temp_dir().join(format!("ddb2pg-s3-u{uid}-{}", &h[..12]));
        crate::private::own_dir(
            &dir,
            &format!(
                "the local copy of {}'s rejects and the downloads of s3:// exports",
                self.url
            ),
            "set TMPDIR to a folder of your own",
        )?;
        Ok(dir)
    }

    fn publish(&self, name: &str, local: &Path) -> Result<()> {
        let len = match std::fs::metadata(local) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::file(local, e)),
        };
        self.publish_parts(name, local, len)
    }

    fn publish_prefix(&self, name: &str, local: &Path, len: u64) -> Result<()> {
        self.publish_parts(name, local, len)
    }

    fn keeps_copies(&self) -> bool {
        true
    }

    fn fetch(&self, name: &str, local: &Path, committed: Option<u64>) -> Result<()> {
        self.fetch_parts(name, local, committed)
    }

    fn lines(&self, name: &str) -> Result<Option<u64>> {
        self.count_parts_lines(name)
    }

    fn holds(&self, name: &str) -> Result<bool> {
        Ok(self.has_parts(name)? || self.list()?.iter().any(|n| n == name))
    }

    fn secure(&self, _names: &Names) -> Result<()> {
        Ok(())
    }
}
