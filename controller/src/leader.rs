//! Leader election on a `coordination.k8s.io` Lease, so several controller replicas can
//! run and only one acts. The holder renews the Lease; a candidate takes it over once it
//! has not been renewed for its duration. Writes carry the resourceVersion they read, so
//! two candidates can never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Leading,
    /// Someone else holds a live lease.
    Following(String),
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: take the lease if it is free or expired, renew it if ours.
    pub async fn try_acquire(&self) -> Result<Outcome, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.is_already_exists() => {
                    Ok(Outcome::Following(String::new()))
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .and_then(|t| {
                t.checked_add(Duration::from_secs(
                    spec.lease_duration_seconds.unwrap_or(0).max(0) as u64,
                ))
                .ok()
            })
            .is_none_or(|expiry| expiry <= now);
        let ours = holder == self.identity;
        if !ours && !expired {
            return Ok(Outcome::Following(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(
            now,
            if ours { spec.acquire_time } else { None },
            transitions,
        ));
        // `replace` sends the resourceVersion we read: a concurrent writer makes it fail.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Outcome::Leading),
            Err(kube::Error::Api(e)) if e.is_conflict() => Ok(Outcome::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        loop {
            match self.try_acquire().await? {
                Outcome::Leading => return Ok(()),
                Outcome::Following(holder) => {
                    tracing::info!(lease = %self.name, %holder, "another controller leads; waiting");
                    tokio::time::sleep(self.duration / 3).await;
                }
            }
        }
    }

    /// Renews the lease until it is lost (another candidate took it, or renewal failed
    /// for longer than the lease lasts); then returns, and the caller must stop acting.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(Outcome::Leading) => last_renewed = tokio::time::Instant::now(),
                Ok(Outcome::Following(holder)) => {
                    tracing::warn!(lease = %self.name, %holder, "lost the leader lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(lease = %self.name, %error, "renewing the leader lease failed");
                    if last_renewed.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }
}
