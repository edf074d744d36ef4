//! The route table against the OpenAPI document, and the operations against
//! the metrics' label sets.

use super::*;
use crate::http::error::LABELS;
use std::collections::BTreeSet;

#[test]
fn every_operation_and_role_is_counted_without_a_lock() {
    use crate::metrics::{OPERATIONS, ROLES};
    for (_, _, op) in ROUTES {
        assert!(OPERATIONS.contains(&op.label()), "{}", op.label());
    }
    assert!(OPERATIONS.contains(&UNKNOWN_OPERATION));
    for role in [Role::Backend, Role::Device] {
        assert!(ROLES.contains(&role.label()), "{}", role.label());
    }
}

fn doc() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../../docs/openapi.json")).unwrap()
}

#[test]
fn openapi_paths_match_the_route_table() {
    let doc = doc();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn openapi_roles_match_authorization() {
    let doc = doc();
    for (m, p, op) in ROUTES {
        let roles: BTreeSet<String> = doc["paths"][p][m.to_lowercase()]["x-roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        let allowed: BTreeSet<String> = [Role::Backend, Role::Device]
            .into_iter()
            .filter(|r| op.allowed(*r))
            .map(|r| r.label().to_string())
            .collect();
        assert_eq!(roles, allowed, "{m} {p}");
    }
}

#[test]
fn openapi_error_labels_match() {
    let doc = doc();
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
    assert_eq!(documented, LABELS.iter().copied().collect::<BTreeSet<_>>());
    // And every error's label is in LABELS, with the status the document gives it.
    let samples = [
        ApiError::BadRequest(String::new()),
        ApiError::InvalidWrappedKey,
        ApiError::Forbidden(String::new()),
        ApiError::NotFound,
        ApiError::MethodNotAllowed { allow: "POST" },
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::RequestTimeout,
        ApiError::TooManyRequests {
            retry_after: std::time::Duration::from_secs(1),
        },
        ApiError::BackendUnavailable {
            retry_after: std::time::Duration::from_secs(1),
        },
        ApiError::BackendFailure,
        ApiError::AuditUnavailable,
        ApiError::Internal,
    ];
    let text = include_str!("../../../../docs/openapi.json");
    for e in samples {
        let (status, label) = e.status_and_label();
        assert!(LABELS.contains(&label), "{label}");
        if !matches!(e, ApiError::NotFound | ApiError::MethodNotAllowed { .. }) {
            let decrypt =
                &doc["paths"]["/v1/workspace-keys/decrypt"]["post"]["responses"][status.as_str()];
            assert!(
                decrypt["description"].as_str().unwrap().contains(label),
                "{label} under {status} in the document"
            );
        }
        assert!(text.contains(label));
    }
}
