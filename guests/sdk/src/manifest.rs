//! Builders for the manifest and discovery types.

use crate::bindings::airlock::connector::types as wit;
use serde_json::Value;

pub use wit::{Access, Classification, Risk};

/// One operation a connector offers.
pub struct Operation {
    name: String,
    description: String,
    access: Access,
    risk: Risk,
    classification: Classification,
    params_schema: Value,
    read_routes: Vec<String>,
}

impl Operation {
    /// An operation that only reads: low risk, internal data, no params until set.
    pub fn read(name: &str, description: &str) -> Self {
        Operation::new(name, description, Access::Read, Risk::Low)
    }

    /// An operation that changes the upstream system: medium risk until set.
    pub fn write(name: &str, description: &str) -> Self {
        Operation::new(name, description, Access::Write, Risk::Medium)
    }

    fn new(name: &str, description: &str, access: Access, risk: Risk) -> Self {
        Operation {
            name: name.into(),
            description: description.into(),
            access,
            risk,
            classification: Classification::Internal,
            params_schema: serde_json::json!({"type": "object"}),
            read_routes: Vec::new(),
        }
    }

    /// Declares a request that counts as a read although its method is not GET, e.g.
    /// `POST https://api.example.com/graphql` (the connection must accept read routes).
    pub fn read_route(mut self, route: &str) -> Self {
        self.read_routes.push(route.into());
        self
    }

    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = risk;
        self
    }

    pub fn classification(mut self, classification: Classification) -> Self {
        self.classification = classification;
        self
    }

    /// JSON Schema of the params object.
    pub fn params_schema(mut self, schema: Value) -> Self {
        self.params_schema = schema;
        self
    }
}

/// What a connector says about itself.
pub struct Manifest {
    id: String,
    name: String,
    version: String,
    description: String,
    operations: Vec<Operation>,
    config_schema: Value,
    hosts: Vec<String>,
    prototype: bool,
}

impl Manifest {
    pub fn new(id: &str, name: &str, version: &str, description: &str) -> Self {
        Manifest {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            description: description.into(),
            operations: Vec::new(),
            config_schema: serde_json::json!({"type": "object"}),
            hosts: Vec::new(),
            prototype: false,
        }
    }

    pub fn operation(mut self, operation: Operation) -> Self {
        self.operations.push(operation);
        self
    }

    /// JSON Schema of the connection's config.
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.config_schema = schema;
        self
    }

    /// A host the connector expects to reach, e.g. `https://api.example.com`.
    pub fn host(mut self, host: &str) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Marks a prototype: the host runs its writes as dry runs unless the connection turns that
    /// off or the host runs with `DRY_RUN=false`.
    pub fn prototype(mut self) -> Self {
        self.prototype = true;
        self
    }

    pub(crate) fn into_wit(self) -> wit::ConnectorManifest {
        wit::ConnectorManifest {
            id: self.id,
            name: self.name,
            version: self.version,
            description: self.description,
            operations: self
                .operations
                .into_iter()
                .map(|op| wit::Operation {
                    name: op.name,
                    description: op.description,
                    access: op.access,
                    risk: op.risk,
                    classification: op.classification,
                    params_schema: op.params_schema.to_string(),
                    read_routes: op.read_routes,
                })
                .collect(),
            config_schema: self.config_schema.to_string(),
            hosts: self.hosts,
            prototype: self.prototype,
        }
    }
}

/// A field of a discovered object.
pub struct Field {
    pub name: String,
    pub ty: String,
    pub required: bool,
    pub description: String,
}

impl Field {
    pub fn new(name: &str, ty: &str, required: bool, description: &str) -> Self {
        Field {
            name: name.into(),
            ty: ty.into(),
            required,
            description: description.into(),
        }
    }
}

/// An object (table, resource type) a connector exposes.
pub struct ObjectInfo {
    pub name: String,
    pub description: String,
    pub fields: Vec<Field>,
}

impl ObjectInfo {
    pub(crate) fn into_wit(self) -> wit::ObjectInfo {
        wit::ObjectInfo {
            name: self.name,
            description: self.description,
            fields: self
                .fields
                .into_iter()
                .map(|f| wit::Field {
                    name: f.name,
                    type_: f.ty,
                    required: f.required,
                    description: f.description,
                })
                .collect(),
        }
    }
}
