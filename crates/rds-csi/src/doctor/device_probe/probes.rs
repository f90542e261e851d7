//! Running the probes against the device, recording every command, reply and read-back into
//! [`Findings`] as it goes (so an interrupted run keeps what it saw).

use routeros::{Client, Error, ItemId};

use super::cleanup;
use super::findings::{DeviceState, Exchange, Findings, Probe, Reply, Step, parse_state};
use super::judge::baseline_disk;
use super::plan::{
    ADOPTION_SIZE, IMAGE_SIZE, MISSING_ID, MISSING_ID_MARGIN, Name, Plan, id_number,
};

/// Why a run ended before its last probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error(
        "the device already holds items named {0}*; nothing was changed (run again for a new name)"
    )]
    Collision(String),
    #[error("no answer while {doing}: {error}")]
    NoAnswer { doing: String, error: String },
    #[error("could not read {what}: {error}")]
    Unreadable { what: String, error: String },
    #[error("the first add made no disk, and every other probe needs it")]
    BaselineNotMade,
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
}

/// One run: the client, its names, the pool, and where it records.
pub struct Run<'a> {
    pub client: &'a Client,
    pub plan: &'a Plan,
    pub pool: &'a str,
    pub findings: &'a mut Findings,
}

impl Run<'_> {
    /// Every probe in order. Returns early (with the reason) when going on makes no sense; what
    /// ran so far stays in the findings either way.
    pub async fn all(&mut self) -> Result<(), Stop> {
        let plan = self.plan;
        self.findings.initial = self
            .read_state("the probe's names before the first change")
            .await?;
        if !self.findings.initial.is_empty() {
            return Err(Stop::Collision(plan.tag().to_owned()));
        }
        self.findings.free_before = self.pool_free().await;
        self.probe(Probe::Baseline, plan.add(Name::A, Name::A, IMAGE_SIZE))
            .await?;
        self.findings.free_after = self.pool_free().await;
        let baseline = baseline_disk(plan, self.findings)
            .map(|d| d.id.clone())
            .ok_or(Stop::BaselineNotMade)?;

        self.probe(Probe::DuplicateSlot, plan.add(Name::A, Name::B, IMAGE_SIZE))
            .await?;
        self.probe(
            Probe::ExistingFile,
            plan.add(Name::C, Name::A, ADOPTION_SIZE),
        )
        .await?;

        match id_number(&baseline) {
            Some(n) if n < MISSING_ID_MARGIN => {
                let missing = ItemId::try_from(MISSING_ID).expect("a valid id");
                self.probe(Probe::MissingId, plan.remove_by_id(&missing))
                    .await?;
            }
            _ => self.skip(
                Probe::MissingId,
                format!("the device's ids already reach {baseline}, too close to {MISSING_ID}"),
            ),
        }
        self.probe(Probe::MissingName, plan.remove_by_name(Name::Missing))
            .await?;

        let huge = self.findings.pool_size.saturating_mul(4);
        self.probe(Probe::NoSpace, plan.add(Name::Big, Name::Big, huge))
            .await?;
        let made: Vec<_> = self
            .findings
            .current()
            .disks_in(plan.slot(Name::Big).as_str())
            .cloned()
            .collect();
        if !made.is_empty() {
            let files: Vec<_> = self
                .findings
                .current()
                .file(plan.image(Name::Big).as_str())
                .cloned()
                .into_iter()
                .collect();
            let removal = cleanup::remove(self.client, &made, &files).await;
            self.findings.huge_removal = Some(removal);
        }

        let id = ItemId::try_from(baseline.as_str()).map_err(|e| Stop::Unreadable {
            what: "the first disk's id".into(),
            error: e.to_string(),
        })?;
        self.probe(Probe::RemoveKeepsImage, plan.remove_by_id(&id))
            .await?;

        let image = plan.image(Name::A);
        let state = self.findings.current();
        let users: Vec<&str> = state
            .users_of(image.as_str())
            .map(|d| d.slot.as_str())
            .collect();
        if state.file(image.as_str()).is_none() {
            self.skip(
                Probe::LeftoverImage,
                "the first disk's image is gone".into(),
            );
        } else if !users.is_empty() {
            let reason = format!("the image is still used by {}", users.join(", "));
            self.skip(Probe::LeftoverImage, reason);
        } else {
            self.probe(
                Probe::LeftoverImage,
                plan.add(Name::D, Name::A, ADOPTION_SIZE),
            )
            .await?;
        }
        Ok(())
    }

    /// Sends one probe's command, records its reply, and reads back the run's items.
    async fn probe(&mut self, probe: Probe, command: String) -> Result<(), Stop> {
        let (reply, fault) = match self.client.run_script(&command).await {
            Ok(output) => (Reply::from_output(&output), None),
            Err(error) if is_fault(&error) => (
                Reply::NoAnswer {
                    error: error.to_string(),
                },
                Some(Stop::NoAnswer {
                    doing: format!("sending the {} probe", probe.id()),
                    error: error.to_string(),
                }),
            ),
            Err(error) => (Reply::from_error(&error), None),
        };
        let exchange = Exchange { command, reply };
        let after = match fault {
            // Its state is for the cleanup to find out.
            Some(stop) => Err(stop),
            None => {
                self.read_state(&format!("the state after {}", probe.id()))
                    .await
            }
        };
        // The reply is kept even when the state is not: it is what the run is for.
        self.findings.steps.push(Step {
            probe,
            exchange,
            after: after.as_ref().ok().cloned(),
        });
        after.map(drop)
    }

    fn skip(&mut self, probe: Probe, reason: String) {
        self.findings.skipped.push((probe, reason));
    }

    async fn read_state(&self, what: &str) -> Result<DeviceState, Stop> {
        read_state(self.client, self.plan)
            .await
            .map_err(|error| match error {
                error if is_fault(&error) => Stop::NoAnswer {
                    doing: format!("reading {what}"),
                    error: error.to_string(),
                },
                error => Stop::Unreadable {
                    what: what.to_owned(),
                    error: error.to_string(),
                },
            })
    }

    /// The pool's free bytes; a failed read only loses the sparseness verdict.
    async fn pool_free(&self) -> Option<u64> {
        match self.client.pool(self.pool).await {
            Ok(pool) => Some(pool.free),
            Err(error) => {
                tracing::warn!(%error, "cannot read the pool's free space");
                None
            }
        }
    }
}

/// The run's items on the device now.
pub async fn read_state(client: &Client, plan: &Plan) -> Result<DeviceState, Error> {
    let output = client.run_script(&plan.read_state()).await?;
    parse_state(plan, &output)
}

/// Failures on the way (no answer, lost connection, refused login) as opposed to the device
/// answering: after one, the command may or may not have run.
fn is_fault(error: &Error) -> bool {
    matches!(error, Error::Unavailable(_) | Error::Unauthenticated(_))
}
