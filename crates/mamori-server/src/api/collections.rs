use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_core::schema::CollectionSchema;
use mamori_vault::{CollectionInfo, VaultError};

fn parse_schema(body: serde_json::Value) -> Result<CollectionSchema, ApiError> {
    CollectionSchema::from_json(&body.to_string()).map_err(|e| ApiError::from(VaultError::from(e)))
}

#[utoipa::path(get, path = "/api/v1/collections", tag = "collections", security(("bearer" = [])),
    responses((status = 200, body = Vec<CollectionInfo>), (status = 401, body = Problem)))]
pub(crate) async fn list_collections(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CollectionInfo>>, ApiError> {
    Ok(Json(state.vault.list_collections(&caller.principal).await?))
}

/// Creates a collection from a schema document (the JSON form of a schema TOML file).
#[utoipa::path(post, path = "/api/v1/collections", tag = "collections", security(("bearer" = [])),
    request_body(content = Object, description = "collection schema"),
    responses((status = 201, body = CollectionInfo), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_collection(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<serde_json::Value>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let schema = parse_schema(body)?;
    Ok((StatusCode::CREATED, Json(state.vault.create_collection(&caller.principal, &schema).await?)))
}

#[utoipa::path(get, path = "/api/v1/collections/{name}", tag = "collections", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = CollectionInfo), (status = 404, body = Problem)))]
pub(crate) async fn get_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    Ok(Json(state.vault.collection_info(&caller.principal, &name).await?))
}

/// Adds a schema version. Existing records stay readable under the version they were written in.
#[utoipa::path(put, path = "/api/v1/collections/{name}/schema", tag = "collections", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = Object, description = "collection schema"),
    responses((status = 200, body = CollectionInfo), (status = 422, body = Problem)))]
pub(crate) async fn update_schema(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<serde_json::Value>,
) -> Result<Json<CollectionInfo>, ApiError> {
    let schema = parse_schema(body)?;
    if schema.name.as_str() != name {
        return Err(VaultError::Invalid("the schema's name differs from the collection in the path".into()).into());
    }
    Ok(Json(state.vault.update_schema(&caller.principal, &schema).await?))
}
