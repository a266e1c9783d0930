//! The sandbox connector, from the seeds: create, list, get, update and delete records of named
//! resource types, kept in the connection's key-value storage. Connection config simulates an
//! upstream: `latency_ms` delays every operation, `error_rate` (0 to 1) fails that share of them
//! with an upstream 503.

use airlock_guest::kv::Bucket;
use airlock_guest::{
    Connector, Error, Field, Manifest, ObjectInfo, Operation, Params, Risk, Value, json,
};
use serde::Deserialize;
use std::hash::{BuildHasher, Hasher};

struct Sandbox;

/// Bookkeeping (id counters, the set of types) lives apart from records.
const META_BUCKET: &str = "sandbox-meta";
const TYPES_KEY: &str = "types";
const DEFAULT_LIST_LIMIT: usize = 100;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    latency_ms: u64,
    error_rate: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(rename = "type")]
    ty: String,
    /// Only records whose fields equal these values.
    #[serde(default)]
    filter: serde_json::Map<String, Value>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    #[serde(rename = "type")]
    ty: String,
    /// Chosen by the caller, or assigned from a counter.
    id: Option<String>,
    data: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateParams {
    #[serde(rename = "type")]
    ty: String,
    id: String,
    data: serde_json::Map<String, Value>,
}

fn type_schema() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "resource type, e.g. items"})
}

fn key_schema() -> Value {
    json!({"type": "object", "properties": {"type": type_schema(), "id": {"type": "string"}},
           "required": ["type", "id"], "additionalProperties": false})
}

/// A resource type names a bucket, so it must be a plain identifier.
fn bucket_for(ty: &str) -> Result<Bucket, Error> {
    let ok = !ty.is_empty()
        && ty.len() <= 64
        && ty
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::invalid_params(format!(
            "resource type `{ty}` must be 1-64 letters, digits, `_` or `-`"
        )));
    }
    Bucket::open(&format!("sandbox-{ty}"))
}

fn not_found(ty: &str, id: &str) -> Error {
    Error::not_found(format!("no {ty} with id `{id}`"))
}

fn random_unit() -> f64 {
    // std seeds RandomState from `wasi:random`; one hash of nothing is a random u64.
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Applies the configured latency and error injection.
fn simulate_upstream() -> Result<(), Error> {
    let config: Config = airlock_guest::config::parse()?;
    if config.latency_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(config.latency_ms));
    }
    if config.error_rate > 0.0 && random_unit() < config.error_rate {
        return Err(Error::Upstream {
            status: 503,
            message: format!("injected failure (error_rate = {})", config.error_rate),
        });
    }
    Ok(())
}

fn remember_type(ty: &str) -> Result<(), Error> {
    let meta = Bucket::open(META_BUCKET)?;
    let mut types: Vec<String> = meta.get_json(TYPES_KEY)?.unwrap_or_default();
    if !types.iter().any(|t| t == ty) {
        types.push(ty.to_owned());
        types.sort();
        meta.set_json(TYPES_KEY, &types)?;
    }
    Ok(())
}

fn list(p: ListParams) -> Result<Value, Error> {
    let bucket = bucket_for(&p.ty)?;
    let limit = p.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let mut records = Vec::new();
    for key in bucket.keys()? {
        if records.len() >= limit {
            break;
        }
        let Some(record) = bucket.get_json::<Value>(&key)? else {
            continue;
        };
        let matches = p
            .filter
            .iter()
            .all(|(field, want)| record.get(field) == Some(want));
        if matches {
            records.push(record);
        }
    }
    Ok(json!({ "type": p.ty, "count": records.len(), "records": records }))
}

fn get(p: KeyParams) -> Result<Value, Error> {
    bucket_for(&p.ty)?
        .get_json::<Value>(&p.id)?
        .ok_or_else(|| not_found(&p.ty, &p.id))
}

fn create(p: CreateParams) -> Result<Value, Error> {
    let bucket = bucket_for(&p.ty)?;
    let id = match p.id {
        Some(id) if id.is_empty() => return Err(Error::invalid_params("`id` must not be empty")),
        Some(id) => id,
        None => Bucket::open(META_BUCKET)?
            .increment(&format!("next-id:{}", p.ty), 1)?
            .to_string(),
    };
    if bucket.exists(&id)? {
        return Err(Error::invalid_params(format!(
            "a {} with id `{id}` already exists; use update",
            p.ty
        )));
    }
    let mut record = p.data;
    record.insert("id".into(), Value::String(id.clone()));
    let record = Value::Object(record);
    bucket.set_json(&id, &record)?;
    remember_type(&p.ty)?;
    airlock_guest::log::info(&format!("created {}/{id}", p.ty));
    Ok(record)
}

fn update(p: UpdateParams) -> Result<Value, Error> {
    let bucket = bucket_for(&p.ty)?;
    let Some(Value::Object(mut record)) = bucket.get_json::<Value>(&p.id)? else {
        return Err(not_found(&p.ty, &p.id));
    };
    for (field, value) in p.data {
        if field != "id" {
            record.insert(field, value);
        }
    }
    let record = Value::Object(record);
    bucket.set_json(&p.id, &record)?;
    Ok(record)
}

fn delete(p: KeyParams) -> Result<Value, Error> {
    let bucket = bucket_for(&p.ty)?;
    if !bucket.exists(&p.id)? {
        return Err(not_found(&p.ty, &p.id));
    }
    bucket.delete(&p.id)?;
    Ok(json!({ "type": p.ty, "id": p.id, "deleted": true }))
}

impl Connector for Sandbox {
    fn manifest() -> Manifest {
        Manifest::new(
            "sandbox",
            "Sandbox",
            env!("CARGO_PKG_VERSION"),
            "In-storage CRUD on named resource types, with simulated latency and failures, for tests and demos",
        )
        .config_schema(json!({
            "type": "object",
            "properties": {
                "latency_ms": {"type": "integer", "minimum": 0, "description": "delay added to every operation"},
                "error_rate": {"type": "number", "minimum": 0, "maximum": 1, "description": "share of operations that fail with an upstream 503"}
            },
            "additionalProperties": false
        }))
        .operation(Operation::read("list", "List records of a type, optionally filtered by field values").params_schema(json!({
            "type": "object",
            "properties": {"type": type_schema(), "filter": {"type": "object"}, "limit": {"type": "integer", "minimum": 0}},
            "required": ["type"], "additionalProperties": false
        })))
        .operation(Operation::read("get", "Get one record by id").params_schema(key_schema()))
        .operation(Operation::write("create", "Create a record; the id is assigned unless given").params_schema(json!({
            "type": "object",
            "properties": {"type": type_schema(), "id": {"type": "string", "minLength": 1}, "data": {"type": "object"}},
            "required": ["type", "data"], "additionalProperties": false
        })))
        .operation(Operation::write("update", "Merge fields into a record").params_schema(json!({
            "type": "object",
            "properties": {"type": type_schema(), "id": {"type": "string"}, "data": {"type": "object"}},
            "required": ["type", "id", "data"], "additionalProperties": false
        })))
        .operation(Operation::write("delete", "Delete a record").risk(Risk::High).params_schema(key_schema()))
    }

    fn health() -> Result<String, Error> {
        let config: Config = airlock_guest::config::parse()?;
        simulate_upstream()?;
        Ok(format!(
            "sandbox {} ready (latency {} ms, error rate {})",
            env!("CARGO_PKG_VERSION"),
            config.latency_ms,
            config.error_rate
        ))
    }

    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        let types: Vec<String> = Bucket::open(META_BUCKET)?
            .get_json(TYPES_KEY)?
            .unwrap_or_default();
        let mut objects = Vec::new();
        for ty in types {
            let bucket = bucket_for(&ty)?;
            let mut fields: Vec<Field> = Vec::new();
            // A sample of records is enough to describe a schemaless type.
            for key in bucket.keys()?.into_iter().take(20) {
                if let Some(Value::Object(record)) = bucket.get_json::<Value>(&key)? {
                    for (name, value) in record {
                        if !fields.iter().any(|f| f.name == name) {
                            fields.push(Field::new(&name, json_type(&value), name == "id", ""));
                        }
                    }
                }
            }
            objects.push(ObjectInfo {
                name: ty.clone(),
                description: format!("sandbox records of type {ty}"),
                fields,
            });
        }
        Ok(objects)
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        simulate_upstream()?;
        match operation {
            "list" => list(params.parse()?),
            "get" => get(params.parse()?),
            "create" => create(params.parse()?),
            "update" => update(params.parse()?),
            "delete" => delete(params.parse()?),
            other => Err(Error::unknown_operation(other)),
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

airlock_guest::export_connector!(Sandbox);
