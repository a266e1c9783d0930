//! `airlock credential`: set, list, rotate and delete. Secrets come from stdin or a file, never
//! from argv, and are never printed.

use super::*;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CredentialKind {
    /// Authorization: Bearer <secret>
    Bearer,
    /// Authorization: Basic base64(username:secret)
    Basic,
    /// <header>: <secret>
    Header,
    /// ?<param>=<secret>
    Query,
    /// OAuth2 client credentials: the secret is the client secret; tokens are fetched from
    /// --token-url and sent as Bearer
    Oauth2,
    /// Sign the request body: <header>: sha256=<hex HMAC-SHA256(secret, body)>
    Hmac,
    /// OAuth2 refresh token: the secret is the refresh token; rotated ones are stored
    Oauth2Refresh,
    /// OAuth2 JWT bearer (RFC 7523): the secret is a PEM private key; the host signs assertions
    /// for --issuer and trades them at --token-url
    Oauth2Jwt,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the flags"
)]
pub enum CredentialCommand {
    /// Store a credential for a connection; the secret is read from --value-file or stdin, never
    /// from the command line.
    Set {
        connection: String,
        name: String,
        #[arg(long, value_enum)]
        kind: CredentialKind,
        /// The hosts it may be sent to, as egress grants (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// For --kind basic.
        #[arg(long)]
        username: Option<String>,
        /// For --kind header, e.g. X-Api-Key.
        #[arg(long)]
        header: Option<String>,
        /// For --kind query, e.g. api_key.
        #[arg(long)]
        param: Option<String>,
        /// For --kind oauth2: the token endpoint (under one of the --host grants).
        #[arg(long)]
        token_url: Option<String>,
        /// For --kind oauth2.
        #[arg(long)]
        client_id: Option<String>,
        /// For --kind oauth2 and oauth2-jwt, optional.
        #[arg(long)]
        scope: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `iss` (client id, service account email).
        #[arg(long)]
        issuer: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `sub` (the user acted for); default the issuer.
        #[arg(long)]
        subject: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `aud`; default the token URL.
        #[arg(long)]
        audience: Option<String>,
        /// For --kind oauth2-jwt: the `kid` header naming the key to the provider.
        #[arg(long)]
        key_id: Option<String>,
        /// For --kind oauth2-jwt: RS256 (RSA key) or ES256 (P-256 key).
        #[arg(long, default_value = "RS256")]
        algorithm: String,
        /// Read the secret from this file instead of stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// Replace a credential's secret (from --value-file or stdin).
    Rotate {
        connection: String,
        name: String,
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// Show a connection's credentials: metadata only.
    List { connection: String },
    /// Remove a credential.
    Delete { connection: String, name: String },
}

/// The secret, from a file or stdin, without a trailing newline.
fn read_secret(file: Option<&Path>) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| {
                    anyhow::anyhow!("cannot read the secret from {}: {e}", path.display())
                })?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("secret (then Enter, then Ctrl-D):");
            }
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("cannot read the secret from stdin: {e}"))?;
        }
    }
    let trimmed = zeroize::Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    Ok(trimmed)
}

pub async fn credential(
    cp: &ControlPlane,
    who: &Identity,
    command: CredentialCommand,
) -> anyhow::Result<u8> {
    use airlock::egress::credential::Placement;
    let principal = who.principal()?;
    let show = |c: &airlock::control::state::CredentialRecord| {
        format!(
            "{} ({}, version {}) for {}",
            c.name,
            c.kind,
            c.version,
            c.hosts.join(", ")
        )
    };
    let result = match command {
        CredentialCommand::Set {
            connection,
            name,
            kind,
            hosts,
            username,
            header,
            param,
            token_url,
            client_id,
            scope,
            issuer,
            subject,
            audience,
            key_id,
            algorithm,
            value_file,
        } => {
            let missing = |flag: &str| anyhow::anyhow!("--kind needs {flag}");
            let placement = match kind {
                CredentialKind::Bearer => Placement::Bearer,
                CredentialKind::Basic => Placement::Basic {
                    username: username.ok_or_else(|| missing("--username"))?,
                },
                CredentialKind::Header => Placement::Header {
                    header: header.ok_or_else(|| missing("--header"))?,
                },
                CredentialKind::Query => Placement::Query {
                    param: param.ok_or_else(|| missing("--param"))?,
                },
                CredentialKind::Oauth2Refresh => Placement::OAuth2RefreshToken {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    client_id: client_id.ok_or_else(|| missing("--client-id"))?,
                },
                CredentialKind::Hmac => Placement::HmacSha256 {
                    header: header.ok_or_else(|| missing("--header"))?,
                },
                CredentialKind::Oauth2Jwt => Placement::OAuth2JwtBearer {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    issuer: issuer.ok_or_else(|| missing("--issuer"))?,
                    subject,
                    audience,
                    scope,
                    key_id,
                    algorithm: airlock::egress::jwt::Algorithm::parse(&algorithm)
                        .map_err(|e| anyhow::anyhow!("--algorithm: {e}"))?,
                },
                CredentialKind::Oauth2 => Placement::OAuth2ClientCredentials {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    client_id: client_id.ok_or_else(|| missing("--client-id"))?,
                    scope,
                },
            };
            let secret = read_secret(value_file.as_deref())?;
            cp.credential_set(&principal, &connection, &name, placement, hosts, secret)
                .await
                .map(|c| {
                    if who.json {
                        print_json(&c)
                    } else {
                        println!("credential {}", show(&c))
                    }
                })
        }
        CredentialCommand::Rotate {
            connection,
            name,
            value_file,
        } => {
            let secret = read_secret(value_file.as_deref())?;
            cp.credential_rotate(&principal, &connection, &name, secret)
                .await
                .map(|c| {
                    if who.json {
                        print_json(&c)
                    } else {
                        println!("credential rotated: {}", show(&c))
                    }
                })
        }
        CredentialCommand::List { connection } => cp
            .credential_list(&principal, &connection)
            .await
            .map(|list| {
                if who.json {
                    return print_json(&list);
                }
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.kind.clone(),
                            c.hosts.join(", "),
                            c.version.to_string(),
                            when(c.rotated_at.or(Some(c.created_at))),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["name", "kind", "hosts", "version", "set"], rows)
                );
            }),
        CredentialCommand::Delete { connection, name } => cp
            .credential_delete(&principal, &connection, &name)
            .await
            .map(|()| println!("credential {name} deleted")),
    };
    flush(cp).await;
    Ok(match result {
        Ok(()) => EXIT_OK,
        Err(e) => report_error(&e),
    })
}
