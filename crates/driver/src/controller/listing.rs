//! ListVolumes: pages of the driver's volumes, the pages after the first cut from the
//! listing the first was read from.

use routeros::FileDisk;

use super::rules::{Page, check_token, page_and_rest};
use super::service::ControllerService;
use crate::error::Result;

/// The driver's disks after a ListVolumes page, from the listing that page was cut from.
#[derive(Debug)]
pub(super) struct ListingRest {
    /// The token issued with the page: the last slot on it.
    token: String,
    taken_at: std::time::Instant,
    disks: Vec<FileDisk>,
}

/// Listings kept for pages yet to come: one per CO paging through at once is plenty.
const KEPT_LISTINGS: usize = 4;

impl ControllerService {
    /// ListVolumes: one page of the driver's volumes. One round trip (every file disk, then
    /// filtered and paged here) for a first page; a page after it is cut from the same
    /// listing while that is at most `cache_ttl` old (the CO pages through with the tokens
    /// issued, and the spec lets a listing miss changes made between its pages), else read
    /// anew.
    pub async fn list_volumes(&self, starting_token: &str, max_entries: usize) -> Result<Page> {
        check_token(starting_token)?;
        let (disks, taken_at) = match self.kept_listing(starting_token) {
            Some(kept) => (kept.disks, kept.taken_at),
            None => {
                let taken_at = std::time::Instant::now();
                (self.rds().list_disks("").await?, taken_at)
            }
        };
        let (page, rest) = page_and_rest(
            disks,
            &self.config().volume_base_path,
            starting_token,
            max_entries,
        )?;
        if let Some(token) = &page.next_token {
            let mut kept = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() >= KEPT_LISTINGS {
                kept.remove(0);
            }
            kept.push(ListingRest {
                token: token.clone(),
                taken_at,
                disks: rest,
            });
        }
        Ok(page)
    }

    /// The rest of the listing a page ending at `token` was cut from, if young enough; stale
    /// ones are dropped.
    fn kept_listing(&self, token: &str) -> Option<ListingRest> {
        let mut kept = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| k.taken_at.elapsed() < self.config().cache_ttl);
        if token.is_empty() {
            return None;
        }
        let at = kept.iter().position(|k| k.token == token)?;
        Some(kept.swap_remove(at))
    }
}
