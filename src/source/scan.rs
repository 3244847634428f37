//! One segment of a parallel Scan: pages with ExclusiveStartKey until the segment ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::progress::Stats;
use crate::value::Item;

/// One page of a segment: its items, and the key to continue from (None: the segment ended).
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Item>,
}

/// Where and how to scan one segment.
#[derive(Clone)]
pub struct SegmentScan {
    pub client: Client,
    pub table: String,
    pub segment: u32,
    pub total_segments: u32,
    /// Items per page (the Scan `Limit`); DynamoDB also stops a page at 1 MB.
    pub page_size: u32,
}

impl SegmentScan {
    /// Read the segment from `start` (a checkpoint cursor) to its end, sending each page into
    /// `tx`. Stops early, without error, when `shutdown` turns true or the receiver is gone.
    pub async fn run(
        self,
        start: Option<Item>,
        tx: mpsc::Sender<Page>,
        mut shutdown: watch::Receiver<bool>,
        stats: Arc<Stats>,
    ) -> Result<()> {
        let mut cursor = start;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let request = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(self.segment as i32)
                .total_segments(self.total_segments as i32)
                .limit(self.page_size as i32)
                .set_exclusive_start_key(cursor.take())
                .send();
            let out = tokio::select! {
                out = request => out,
                _ = shutdown.changed() => return Ok(()),
            };
            let out = out.map_err(|e| Error::Source {
                message: format!(
                    "Scan of segment {} of {:?}: {}",
                    self.segment,
                    self.table,
                    super::sdk_message(&e)
                ),
                retryable: super::sdk_retryable(&e),
            })?;
            let items = out.items.unwrap_or_default();
            stats
                .items_read
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            let next = out.last_evaluated_key.filter(|k| !k.is_empty());
            let last = next.is_none();
            cursor = next.clone();
            if tx.send(Page { items, next }).await.is_err() {
                return Ok(());
            }
            if last {
                return Ok(());
            }
        }
    }
}
