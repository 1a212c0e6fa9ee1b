//! The OpenAPI document served at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::Principal;
use super::{calls, flows, policy, tenants};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "voxgate flows API", description = "Tenants, keys, call flows, numbers, call records, NOC policies and AI health."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        flows::schema,
        tenants::create, tenants::list, tenants::get_one, tenants::get_settings, tenants::put_settings,
        tenants::audit, tenants::create_key, tenants::list_keys, tenants::revoke_key,
        flows::list, flows::create, flows::get_draft, flows::update_draft, flows::delete, flows::validate,
        flows::publish, flows::rollback, flows::versions, flows::version, flows::diff,
        calls::list_numbers, calls::put_number, calls::delete_number, calls::list_calls, calls::get_call,
        policy::get_policy, policy::put_policy, policy::policy_audit, policy::health,
    ),
    components(schemas(super::Problem, crate::store::Role, crate::store::TenantSettings))
)]
struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi_json() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null)
}

pub(super) async fn document(_who: Principal) -> Json<serde_json::Value> {
    Json(openapi_json())
}
