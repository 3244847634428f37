//! `ddb2pg finish`: ask a running follower (`migrate --follow`) to finish once it has applied
//! everything, so that a cutover needs no stop and restart.
//!
//! **The request** is a small JSON document beside the checkpoint, `<checkpoint stem>.finish`
//! (in the local folder or under the S3 prefix): `{"requested_at_ms": T, "by": "pid N on
//! HOST"}`. SIGUSR1 to the follower's process is the local shortcut (same effect).
//!
//! **The follower** ([`Watch`]) looks for it every `LOCAL_EVERY` (one local read) or, on S3,
//! every `S3_EVERY` (one GET of a small object); from then on it behaves as with
//! `--until-caught-up`: it exits once caught up, with its verdict, and removes the request.
//! A request made during the load is honoured once the load is done and the stream caught up.
//!
//! **Untrusted requests**: anyone who can add a name to the folder or prefix can put one
//! there. At most `REQUEST_LIMIT` bytes are read, and locally only from a regular file of this
//! user (never through a link, from a FIFO or a device); anything else is ignored with one
//! warning (not one per look).
//!
//! **Stale requests**: a request made before the run that finds it took its lock was meant for
//! an earlier run (which ended before it saw it): it is removed with a note, not honoured. The
//! times compared are the clocks of the machine that ran `finish` and the follower's.
//!
//! **Refusals** (exit 2): no checkpoint of the table in the folder, several (give the
//! checkpoint file), one that does not follow a stream, or no run holding its lock (nothing
//! runs that could finish: start the follower with `--until-caught-up` instead).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::{printable, Checkpoint, LocalDir, Names, Storage, Tag};
use crate::cli::FinishArgs;
use crate::error::{Error, Result};
use crate::follow::now_ms;

/// A local request is looked for this often.
const LOCAL_EVERY: Duration = Duration::from_millis(500);
/// An S3 request: at most one GET this often.
const S3_EVERY: Duration = Duration::from_secs(5);
/// The longest request read (`ddb2pg finish` writes well under 200 bytes).
const REQUEST_LIMIT: u64 = 4096;

/// The request document.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Request {
    /// When it was made (epoch ms, the clock of the machine that ran `finish`).
    requested_at_ms: i64,
    /// Who made it ("pid N on HOST").
    #[serde(default)]
    by: String,
}

/// `ddb2pg finish`: write the request beside the checkpoint of the table's running follower.
pub fn run(args: &FinishArgs) -> Result<u8> {
    let (storage, names) = locate(args)?;
    let shown = printable(&storage.show(&names.checkpoint)).into_owned();
    let cp = match storage.read(&names.checkpoint)? {
        None => return Err(Error::config(format!("{shown}: not found"))),
        Some((bytes, _)) => Checkpoint::inspect(&bytes)
            .map_err(|bad| Error::config(format!("{shown} cannot be used: {bad}")))?,
    };
    if cp.stream.is_none() {
        return Err(Error::config(format!(
            "{shown} does not follow a stream (its run was not started with --follow): a load \
             ends by itself, there is nothing to finish"
        )));
    }
    let lock = storage.lock_state(&names.lock);
    if !lock.running {
        return Err(Error::config(format!(
            "no run holds the lock of {shown}: no follower is running, nothing to finish. To \
             catch up and exit, run the same migrate command with --until-caught-up"
        )));
    }
    let request = Request {
        requested_at_ms: now_ms(),
        by: crate::checkpoint::holder_id(),
    };
    let bytes = serde_json::to_vec(&request).map_err(|e| Error::config(e.to_string()))?;
    let name = names.finish();
    // Replaced whatever is there, unread (anyone may have put it there: see `Watch::look`).
    storage.write(&name, &bytes, &Tag::Local)?;
    crate::say!(
        "finish requested ({}): the follower ({}) exits once caught up, with exit code \
         0 (4 if this run of it rejected changes); `ddb2pg status` shows its verdict",
        printable(&storage.show(&name)),
        printable(lock.holder.as_deref().unwrap_or("holder unknown")),
    );
    Ok(0)
}

/// The storage and the names of the checkpoint `finish` is for: the table's only one in the
/// folder, or the checkpoint file given.
fn locate(args: &FinishArgs) -> Result<(Arc<dyn Storage>, Names)> {
    let dir = &args.checkpoint_dir;
    let text = dir.to_string_lossy();
    if !text.starts_with("s3://") && dir.is_file() {
        let parent = dir.parent().unwrap_or(std::path::Path::new("."));
        let file = dir.file_name().map(|n| n.to_string_lossy().to_string());
        let names = file
            .as_deref()
            .and_then(Names::of_checkpoint)
            .ok_or_else(|| Error::config(format!("{}: not a checkpoint file", printable(&text))))?;
        return Ok((Arc::new(LocalDir::new(parent)), names));
    }
    let Some(table) = &args.table else {
        return Err(Error::config(
            "--table is needed to find the checkpoint in a folder (or give the checkpoint file \
             as --checkpoint-dir)",
        ));
    };
    let storage = crate::checkpoint::open(dir, &args.s3.aws(), &args.s3.s3_endpoint_url)?;
    let mut found: Vec<Names> = storage
        .list()?
        .iter()
        .filter_map(|n| Names::of_checkpoint(n))
        // A follower is never a shard (it takes the shards' load as its own).
        .filter(|n| n.of_table(table) && n.checkpoint == format!("{}.json", n.base))
        .collect();
    match found.len() {
        1 => Ok((storage, found.remove(0))),
        0 => Err(Error::config(format!(
            "no checkpoint of table {} in {}: is it the --checkpoint-dir the follower runs with?",
            printable(table),
            printable(&text)
        ))),
        _ => Err(Error::config(format!(
            "several checkpoints of table {} in {} (other sources or targets): {}; give the \
             follower's checkpoint file as --checkpoint-dir",
            printable(table),
            printable(&text),
            found
                .iter()
                .map(|n| printable(&n.checkpoint).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The follower's side: whether a finish was requested (a request document, or SIGUSR1).
pub struct Watch {
    storage: Arc<dyn Storage>,
    name: String,
    /// When this run started (epoch ms): older requests are stale.
    started_ms: i64,
    every: Duration,
    last: Option<Instant>,
    /// Set by SIGUSR1.
    signalled: Arc<AtomicBool>,
    /// What asked, once something did.
    asked: Option<String>,
    /// The last note about a request not honoured (said once, not at every look).
    noted: Option<String>,
}

impl Watch {
    /// For the run of `names`, which took its lock at `started_ms`; `usr1`: set by SIGUSR1
    /// ([`listen_usr1`]).
    pub fn start(
        storage: Arc<dyn Storage>,
        names: &Names,
        started_ms: i64,
        usr1: Arc<AtomicBool>,
    ) -> Watch {
        Watch {
            every: match storage.keeps_copies() {
                true => S3_EVERY,
                false => LOCAL_EVERY,
            },
            storage,
            name: names.finish(),
            started_ms,
            last: None,
            signalled: usr1,
            asked: None,
            noted: None,
        }
    }

    /// What asked to finish ("ddb2pg finish (pid N on HOST)", "SIGUSR1"), once something did:
    /// the request is looked for at most every `every`; a stale one is removed with a note.
    pub async fn asked(&mut self) -> Option<&str> {
        if self.asked.is_none() {
            if self.signalled.load(Ordering::SeqCst) {
                self.asked = Some("SIGUSR1".into());
            } else if self.last.is_none_or(|t| t.elapsed() >= self.every) {
                self.last = Some(Instant::now());
                self.asked = self.look().await;
            }
        }
        self.asked.as_deref()
    }

    /// Read the request (off the async threads: the S3 storage blocks), at most
    /// `REQUEST_LIMIT` bytes of a regular file of this user (see `Storage::read_small`).
    async fn look(&mut self) -> Option<String> {
        let (storage, name) = (self.storage.clone(), self.name.clone());
        let read =
            tokio::task::spawn_blocking(move || storage.read_small(&name, REQUEST_LIMIT)).await;
        let shown = printable(&self.storage.show(&self.name)).into_owned();
        let bytes = match read {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                self.note(format!(
                    "the finish request cannot be used: {}; ignored",
                    printable(&e.to_string())
                ));
                return None;
            }
            Err(_) => return None,
        };
        let Ok(req) = serde_json::from_slice::<Request>(&bytes) else {
            self.note(format!(
                "{shown} is not a finish request ddb2pg writes: ignored"
            ));
            return None;
        };
        if req.requested_at_ms < self.started_ms {
            crate::say!(
                "{shown} was made before this run started (for an earlier run): \
                 removed, not honoured"
            );
            self.clear().await;
            return None;
        }
        Some(format!("ddb2pg finish ({})", printable(&req.by)))
    }

    /// Say why a request is not honoured, once while the reason stays the same.
    fn note(&mut self, why: String) {
        if self.noted.as_ref() != Some(&why) {
            crate::say!(warn:"{why}");
            self.noted = Some(why);
        }
    }

    /// Remove the request (when the follower exits).
    pub async fn clear(&self) {
        let (storage, name) = (self.storage.clone(), self.name.clone());
        let removed = tokio::task::spawn_blocking(move || storage.remove(&name)).await;
        if let Ok(Err(e)) = removed {
            crate::say!(warn:"the finish request could not be removed: {e}");
        }
    }
}

/// Listen to SIGUSR1 from now on, for the whole process (its default action would end it):
/// a run that `follows` a stream is asked to finish (the flag returned is set); any other
/// says it has nothing to finish and goes on (unix; elsewhere there is no such signal).
pub fn listen_usr1(follows: bool) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::user_defined1()) {
            Ok(mut usr1) => {
                let flag = flag.clone();
                tokio::spawn(async move {
                    while usr1.recv().await.is_some() {
                        if follows {
                            flag.store(true, Ordering::SeqCst);
                        } else {
                            crate::say!(
                                "SIGUSR1 ignored: this run does not follow a stream (without \
                                 --follow a load ends by itself), there is nothing to finish"
                            );
                        }
                    }
                });
            }
            Err(e) => tracing::debug!("SIGUSR1 cannot be listened to: {e}"),
        }
    }
    flag
}
