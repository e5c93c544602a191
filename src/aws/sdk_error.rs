//! What an SDK error means for a person: denied or not, and one line of
//! reason without the raw response dump.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::tokens::Refusal;

/// An error and its causes on one line ("a: b: c"), without the Debug dump
/// of raw responses that the SDK's own formatter appends.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Error codes AWS throttles with (STS, ECR and the rest).
const THROTTLING_CODES: [&str; 4] =
    ["Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"];

/// How AWS refused an SDK call (denied, throttled, overloaded or failed), and a one-line reason.
pub(crate) fn describe_sdk_error<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> (Refusal, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let code = ctx.err().code();
            let refusal = if status == 403
                || code.is_some_and(|c| c.contains("AccessDenied") || c.contains("UnauthorizedOperation"))
            {
                Refusal::Denied
            } else if status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
                Refusal::Throttled
            } else if status >= 500 {
                Refusal::Overloaded
            } else {
                Refusal::Failed
            };
            let reason = match (code, ctx.err().message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status} from AWS"),
            };
            (refusal, reason)
        }
        SdkError::TimeoutError(_) => (Refusal::Overloaded, "timed out waiting for AWS".into()),
        // A connection not accepted in time is no answer in time too: an
        // endpoint too busy to accept, not one that refused.
        SdkError::DispatchFailure(e) if e.is_timeout() => (Refusal::Overloaded, error_chain(err)),
        other => (Refusal::Failed, error_chain(other)),
    }
}

/// The HTTP status of a raw response, abstracted so [`describe_sdk_error`] is generic.
pub(crate) trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(status: u16, code: &str) -> Refusal {
        let err = AssumeRoleError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        describe_sdk_error(&SdkError::service_error(err, raw)).0
    }

    #[test]
    fn refusals_are_told_apart_so_each_backs_off_its_own_way() {
        assert_eq!(answered(403, "AccessDenied"), Refusal::Denied);
        assert_eq!(answered(400, "Throttling"), Refusal::Throttled);
        assert_eq!(answered(400, "ThrottlingException"), Refusal::Throttled);
        assert_eq!(answered(429, "Whatever"), Refusal::Throttled);
        assert_eq!(answered(503, "ServiceUnavailable"), Refusal::Overloaded);
        assert_eq!(answered(500, "InternalFailure"), Refusal::Overloaded);
        assert_eq!(answered(400, "ValidationError"), Refusal::Failed);
        let timeout = SdkError::<AssumeRoleError, Response>::timeout_error("slow");
        assert_eq!(describe_sdk_error(&timeout), (Refusal::Overloaded, "timed out waiting for AWS".into()));
        let connect = |e: ConnectorError| {
            describe_sdk_error(&SdkError::<AssumeRoleError, Response>::dispatch_failure(e)).0
        };
        let io = || Box::new(std::io::Error::other("x"));
        assert_eq!(connect(ConnectorError::timeout(io())), Refusal::Overloaded);
        assert_eq!(connect(ConnectorError::io(io())), Refusal::Failed);
    }
}
