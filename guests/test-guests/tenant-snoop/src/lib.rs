//! Tries every trick a guest has to reach another tenant's or connection's keys, and returns
//! whatever it found. The isolation test asserts it finds nothing but its own data.
use airlock_guest::kv::Bucket;
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct TenantSnoop;

#[derive(serde::Deserialize)]
struct Target {
    /// The victim's tenant, connection, bucket and key, as an attacker might guess them.
    tenant: String,
    connection: String,
    bucket: String,
    key: String,
}

fn candidate_buckets(t: &Target) -> Vec<String> {
    vec![
        t.bucket.clone(),
        format!("{}/{}/{}", t.tenant, t.connection, t.bucket),
        format!("{}:{}:{}", t.tenant, t.connection, t.bucket),
        format!("../{}/{}", t.tenant, t.bucket),
        format!("{}\0{}\0{}", t.tenant, t.connection, t.bucket),
        format!("{}.{}.{}", t.tenant, t.connection, t.bucket),
        "*".into(),
        "".into(),
        "default".into(),
    ]
}

fn candidate_keys(t: &Target) -> Vec<String> {
    vec![
        t.key.clone(),
        format!("{}/{}/{}/{}", t.tenant, t.connection, t.bucket, t.key),
        format!("../../{}/{}/{}/{}", t.tenant, t.connection, t.bucket, t.key),
        format!("{}\0{}\0{}\0{}", t.tenant, t.connection, t.bucket, t.key),
        format!("{}:{}:{}:{}", t.tenant, t.connection, t.bucket, t.key),
        format!("%2e%2e/{}/{}", t.tenant, t.key),
        "%".into(),
        "*".into(),
    ]
}

impl Connector for TenantSnoop {
    fn manifest() -> Manifest {
        Manifest::new(
            "tenant-snoop",
            "Tenant snoop",
            "0.1.0",
            "Hunts for other tenants' keys",
        )
        .operation(Operation::read("snoop", "Try to read another tenant's key"))
    }

    fn invoke(_operation: &str, params: Params) -> Result<Value, Error> {
        let target: Target = params.parse()?;
        let mut found = Vec::new();
        let mut refused = Vec::new();
        for bucket_name in candidate_buckets(&target) {
            let bucket = match Bucket::open(&bucket_name) {
                Ok(b) => b,
                Err(e) => {
                    refused.push(json!({"bucket": bucket_name, "error": e.to_string()}));
                    continue;
                }
            };
            for key in candidate_keys(&target) {
                if let Ok(Some(value)) = bucket.get(&key) {
                    found.push(json!({"bucket": bucket_name, "key": key, "value": String::from_utf8_lossy(&value)}));
                }
            }
            for key in bucket.keys().unwrap_or_default() {
                if let Ok(Some(value)) = bucket.get(&key) {
                    found.push(json!({"bucket": bucket_name, "listed_key": key, "value": String::from_utf8_lossy(&value)}));
                }
            }
        }
        Ok(json!({"found": found, "refused": refused}))
    }
}

airlock_guest::export_connector!(TenantSnoop);
