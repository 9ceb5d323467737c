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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_kube::mock::Method;
    use berth_kube::mock::{Exchange, JSON, client, finish, scenario, within};
    use serde_json::Value;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases";

    /// One `try_acquire` by "me" against the script.
    async fn attempt(script: Vec<Exchange>) -> Result<Outcome, kube::Error> {
        let (client, handle) = client();
        let driver = scenario(handle, script);
        let elector = Elector::new(
            client,
            "berth-system",
            "berth-controller",
            "me",
            Duration::from_secs(15),
        );
        let outcome = within(elector.try_acquire()).await;
        drop(elector);
        finish(driver).await;
        outcome
    }

    /// The lease as the API server holds it: `holder`'s, renewed `ago` seconds ago.
    fn held(holder: &str, ago: u64) -> Value {
        let renewed = Timestamp::now()
            .checked_sub(Duration::from_secs(ago))
            .unwrap();
        let acquired = renewed.checked_sub(Duration::from_secs(600)).unwrap();
        serde_json::to_value(Lease {
            metadata: ObjectMeta {
                name: Some("berth-controller".into()),
                namespace: Some("berth-system".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(acquired)),
                renew_time: Some(MicroTime(renewed)),
                lease_transitions: Some(2),
                ..Default::default()
            }),
        })
        .unwrap()
    }

    fn get_lease() -> Exchange {
        Exchange::get(&format!("{LEASES}/berth-controller"))
    }

    /// Checks a written lease: ours, renewed just now, with these transitions; and with
    /// the resourceVersion it was read at, if any.
    fn written(body: &Value, transitions: i64, resource_version: Option<&str>) {
        assert_eq!(body["metadata"]["name"], "berth-controller");
        assert_eq!(
            body["metadata"]["resourceVersion"].as_str(),
            resource_version
        );
        let spec = &body["spec"];
        assert_eq!(spec["holderIdentity"], "me");
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], transitions);
        let renewed: Timestamp = spec["renewTime"].as_str().unwrap().parse().unwrap();
        let age = Timestamp::now().duration_since(renewed);
        assert!(age.as_secs() < 5 && !age.is_negative(), "renewed {renewed}");
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_won() {
        let outcome = attempt(vec![
            get_lease().fail(404, "NotFound"),
            Exchange::checked(Method::POST, &format!("{LEASES}?"), JSON, |body| {
                written(&body, 0, None);
                assert_eq!(body["spec"]["acquireTime"], body["spec"]["renewTime"]);
            })
            .reply(201, held("me", 0)),
        ])
        .await;
        assert_eq!(outcome.unwrap(), Outcome::Leading);
    }

    #[tokio::test]
    async fn losing_the_race_to_create_follows() {
        let outcome = attempt(vec![
            get_lease().fail(404, "NotFound"),
            Exchange::checked(Method::POST, &format!("{LEASES}?"), JSON, |body| {
                written(&body, 0, None)
            })
            .fail(409, "AlreadyExists"),
        ])
        .await;
        assert_eq!(outcome.unwrap(), Outcome::Following(String::new()));
    }

    #[tokio::test]
    async fn a_live_lease_of_another_is_left_alone() {
        let outcome = attempt(vec![get_lease().reply(200, held("other", 3))]).await;
        assert_eq!(outcome.unwrap(), Outcome::Following("other".into()));
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_only_at_the_version_read() {
        // The write carries resourceVersion 42: a concurrent writer made it 409.
        let outcome = attempt(vec![
            get_lease().reply(200, held("other", 60)),
            Exchange::checked(
                Method::PUT,
                &format!("{LEASES}/berth-controller?"),
                JSON,
                |body| {
                    written(&body, 3, Some("42"));
                    assert_eq!(body["spec"]["acquireTime"], body["spec"]["renewTime"]);
                },
            )
            .fail(409, "Conflict"),
        ])
        .await;
        assert_eq!(outcome.unwrap(), Outcome::Following("other".into()));
    }

    #[tokio::test]
    async fn our_own_lease_is_renewed_keeping_its_acquire_time() {
        let lease = held("me", 5);
        let acquired = lease["spec"]["acquireTime"].clone();
        let outcome = attempt(vec![
            get_lease().reply(200, lease.clone()),
            Exchange::checked(
                Method::PUT,
                &format!("{LEASES}/berth-controller?"),
                JSON,
                move |body| {
                    written(&body, 2, Some("42"));
                    assert_eq!(body["spec"]["acquireTime"], acquired);
                },
            )
            .reply(200, lease),
        ])
        .await;
        assert_eq!(outcome.unwrap(), Outcome::Leading);
    }

    #[tokio::test]
    async fn other_errors_are_returned() {
        let outcome = attempt(vec![get_lease().fail(403, "Forbidden")]).await;
        assert!(
            matches!(&outcome, Err(kube::Error::Api(s)) if s.code == 403),
            "{outcome:?}"
        );
    }
}
