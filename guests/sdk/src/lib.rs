//! The guest SDK: write an Airlock connector as its operations.
//!
//! ```ignore
//! use airlock_guest::{Connector, Error, Manifest, Operation, Params};
//! use serde_json::{json, Value};
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "Hello", "0.1.0", "Greets")
//!             .operation(Operation::read("greet", "Say hello").params_schema(json!({
//!                 "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]
//!             })))
//!     }
//!
//!     fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
//!         #[derive(serde::Deserialize)]
//!         struct Greet { name: String }
//!         match operation {
//!             "greet" => {
//!                 let p: Greet = params.parse()?;
//!                 Ok(json!({ "greeting": format!("hello, {}", p.name) }))
//!             }
//!             other => Err(Error::unknown_operation(other)),
//!         }
//!     }
//! }
//!
//! airlock_guest::export_connector!(Hello);
//! ```
//!
//! Storage ([`kv`]), config ([`config`]), logs ([`log`]) and HTTP ([`http`]) go through the host,
//! which scopes them to the invocation's tenant and connection and decides every request; the
//! guest never names either, and never holds a credential.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "airlock:connector/connector-world",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "airlock_guest::bindings",
        generate_all,
    });
}

mod manifest;
pub use manifest::{Access, Classification, Field, Manifest, ObjectInfo, Operation, Risk};

pub mod config;
pub mod http;
pub mod kv;
pub mod log;

use bindings::airlock::connector::types as wit;
pub use serde_json::{Value, json};

/// An error a connector returns; the caller sees its kind and message.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    InvalidParams(String),
    NotFound(String),
    Unauthorized(String),
    Upstream {
        status: u16,
        message: String,
    },
    RateLimited {
        retry_after_ms: Option<u64>,
        message: String,
    },
    Internal(String),
}

impl Error {
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Error::InvalidParams(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
    /// The error for an operation name the connector does not handle.
    pub fn unknown_operation(operation: &str) -> Self {
        Error::NotFound(format!("unknown operation `{operation}`"))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidParams(m) => write!(f, "invalid params: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Error::Upstream { status, message } => write!(f, "upstream error {status}: {message}"),
            Error::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for wit::ConnectorError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidParams(m) => wit::ConnectorError::InvalidParams(m),
            Error::NotFound(m) => wit::ConnectorError::NotFound(m),
            Error::Unauthorized(m) => wit::ConnectorError::Unauthorized(m),
            Error::Upstream { status, message } => {
                wit::ConnectorError::Upstream(wit::UpstreamError { status, message })
            }
            Error::RateLimited {
                retry_after_ms,
                message,
            } => wit::ConnectorError::RateLimited(wit::RateLimited {
                retry_after_ms,
                message,
            }),
            Error::Internal(m) => wit::ConnectorError::Internal(m),
        }
    }
}

/// The params of one invocation, as sent by the caller (a JSON object).
pub struct Params(Value);

impl Params {
    /// Deserializes into the operation's params type. A mismatch becomes `invalid-params` naming
    /// the field, e.g. "missing field `id`".
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        serde_json::from_value(self.0).map_err(|e| Error::InvalidParams(e.to_string()))
    }

    /// The raw JSON value.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

/// What a connector implements. Only `manifest` and `invoke` are required.
pub trait Connector {
    /// Describes the connector. Called once when the host loads it.
    fn manifest() -> Manifest;

    /// Tests the connection; the default says the connector is loaded.
    fn health() -> Result<String, Error> {
        Ok("ok".to_string())
    }

    /// The objects the connection exposes.
    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        Ok(Vec::new())
    }

    /// Runs one operation from the manifest.
    fn invoke(operation: &str, params: Params) -> Result<Value, Error>;
}

/// Bridges a [`Connector`] to the WIT exports. Used by [`export_connector!`].
#[doc(hidden)]
pub struct Adapter<C>(std::marker::PhantomData<C>);

impl<C: Connector> bindings::exports::airlock::connector::connector::Guest for Adapter<C> {
    fn manifest() -> wit::ConnectorManifest {
        C::manifest().into_wit()
    }

    fn health() -> Result<String, wit::ConnectorError> {
        C::health().map_err(Into::into)
    }

    fn discover() -> Result<Vec<wit::ObjectInfo>, wit::ConnectorError> {
        C::discover()
            .map(|objects| objects.into_iter().map(ObjectInfo::into_wit).collect())
            .map_err(Into::into)
    }

    fn invoke(operation: String, params: String) -> Result<String, wit::ConnectorError> {
        let params: Value = serde_json::from_str(&params)
            .map_err(|e| wit::ConnectorError::InvalidParams(format!("params are not JSON: {e}")))?;
        let result = C::invoke(&operation, Params(params)).map_err(wit::ConnectorError::from)?;
        serde_json::to_string(&result).map_err(|e| wit::ConnectorError::Internal(e.to_string()))
    }
}

/// Exports a [`Connector`] implementation as the component's `airlock:connector/connector`.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        type __AirlockAdapter = $crate::Adapter<$connector>;
        $crate::bindings::__export_connector_world!(__AirlockAdapter with_types_in $crate::bindings);
    };
}
