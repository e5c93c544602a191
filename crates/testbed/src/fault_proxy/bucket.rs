//! A token bucket standing in for one AWS API's quota, and the log of every
//! call the proxy saw, each traced to the node that made it.

use std::time::{Duration, Instant};

/// How a rejected call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// HTTP 400 with `Throttling` (STS) or `ThrottlingException` (ECR).
    Http400,
    /// HTTP 429 with the same codes.
    Http429,
}

/// A quota: `rate` credits a second, at most `burst` saved up; a call takes
/// one. When `rejected_costs`, a rejected call takes one too (the balance
/// may go as low as `-burst`), so a fleet that hammers a spent bucket keeps
/// it spent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Credits per second.
    pub rate: f64,
    /// The most credits held (and the balance at start).
    pub burst: f64,
    /// How rejections are answered.
    pub rejection: Rejection,
    /// Whether a rejected call costs a credit.
    pub rejected_costs: bool,
}

impl Bucket {
    /// AWS's documented GetAuthorizationToken bucket: 20/s, burst 200, 400s.
    pub fn ecr_default() -> Bucket {
        Bucket { rate: 20.0, burst: 200.0, rejection: Rejection::Http400, rejected_costs: false }
    }
}

/// A bucket's balance. The proxy keeps one per API; the fleet simulation
/// uses the same arithmetic on its paused clock.
#[derive(Debug)]
pub struct Meter {
    /// Its quota.
    pub bucket: Bucket,
    credits: f64,
    at: Instant,
}

impl Meter {
    /// A full bucket at `now`.
    pub fn new(bucket: Bucket, now: Instant) -> Meter {
        Meter { bucket, credits: bucket.burst, at: now }
    }

    /// Whether a call at `now` is admitted; takes its credit.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.credits = (self.credits + elapsed * self.bucket.rate).min(self.bucket.burst);
        self.at = now;
        if self.credits >= 1.0 {
            self.credits -= 1.0;
            true
        } else {
            if self.bucket.rejected_costs {
                self.credits = (self.credits - 1.0).max(-self.bucket.burst);
            }
            false
        }
    }
}

/// One call the proxy saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// When, since the proxy started.
    pub at: Duration,
    /// `AssumeRole`, `GetAuthorizationToken`, `GetCallerIdentity` or `other`.
    pub api: &'static str,
    /// Whether the bucket let it through (calls with no bucket always are).
    pub admitted: bool,
    /// The access key id it was signed with.
    pub key: String,
    /// The node's own key: the signing key, or for credentials an
    /// AssumeRole through the proxy returned, the key that assumed them.
    pub node: String,
    /// When moto's answer came back, since the proxy started (for calls
    /// forwarded to it).
    pub answered: Option<Duration>,
}

/// The access key id in a SigV4 `Authorization` header, if any.
pub(super) fn signing_key(request: &str) -> String {
    request.split("Credential=").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned()
}

/// The access key id an AssumeRole response hands out.
pub(super) fn issued_key(response: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let start = text.find("<AccessKeyId>")? + "<AccessKeyId>".len();
    let end = text[start..].find('<')? + start;
    Some(text[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let b = Bucket { rate: 10.0, burst: 5.0, rejection: Rejection::Http400, rejected_costs: false };
        let mut m = Meter::new(b, t0);
        assert_eq!((0..8).filter(|_| m.admit(t0)).count(), 5);
        assert!(m.admit(t0 + Duration::from_millis(100)), "one credit after 100 ms");
        assert!(!m.admit(t0 + Duration::from_millis(100)));
        let costly = Bucket { rejected_costs: true, ..b };
        let mut m = Meter::new(costly, t0);
        assert_eq!((0..10).filter(|_| m.admit(t0)).count(), 5);
        // 5 rejections took the balance to -5: 1 s of refill (10) leaves 5.
        assert_eq!((0..8).filter(|_| m.admit(t0 + Duration::from_secs(1))).count(), 5);
    }

    #[test]
    fn keys_are_read_from_the_signature_and_the_response() {
        let req = "POST / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAFLEET0000000007/20261202/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=ab\r\n\r\n";
        assert_eq!(signing_key(req), "AKIAFLEET0000000007");
        let resp = b"<Credentials><AccessKeyId>ASIAXYZ</AccessKeyId><SecretAccessKey>s</SecretAccessKey>";
        assert_eq!(issued_key(resp).as_deref(), Some("ASIAXYZ"));
    }
}
