//! TLS to upstreams, as LiteLLM users set it: `litellm_settings.ssl_verify`
//! (`false` turns certificate checks off; a path names PEM CA certificates
//! to trust, such as a company's internal CA) and
//! `litellm_settings.ssl_certificate` (a PEM file with the client
//! certificate and private key that upstreams asking for one are shown).
//! As in LiteLLM, `SSL_VERIFY` and `SSL_CERTIFICATE` in the environment win
//! over the config. CA certificates are trusted besides the built-in roots,
//! so that a gateway calling both an internal server and a public provider
//! needs no bundle of every public root; those of `SSL_CERT_FILE` (which
//! many tools read, and systems set to their own bundle) are trusted as
//! well as the config's, and a file it names that cannot be used is only
//! warned about. Read once at start-up, into the one pooled client.

use std::path::PathBuf;

use crate::config::{Config, SslVerify};

/// The variable many TLS clients read a CA bundle from.
const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The upstream TLS settings, resolved from the config and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamTls {
    /// Certificate checks off (`ssl_verify: false`, `SSL_VERIFY=false`).
    pub skip_verification: bool,
    /// Files of PEM CA certificates trusted besides the built-in roots,
    /// each with the setting that named it (for messages).
    pub extra_roots: Vec<(PathBuf, &'static str)>,
    /// The PEM client certificate and key, and the setting that named it.
    pub client_identity: Option<(PathBuf, &'static str)>,
}

impl UpstreamTls {
    /// The settings of `config`, the environment first. Relative paths are
    /// the config file's directory's.
    pub fn from_config(config: &Config) -> Self {
        let env = |name: &str| config.env.get(name).filter(|v| !v.trim().is_empty());
        let ls = &config.litellm_settings;
        let env_verify = env("SSL_VERIFY").map(|v| SslVerify::read(&v));
        let (verify, verify_from) = match env_verify {
            Some(v) => (Some(v), "SSL_VERIFY"),
            None => (ls.ssl_verify.clone(), "litellm_settings.ssl_verify"),
        };
        let bundle_from_verify = match &verify {
            Some(SslVerify::CaBundle(path)) => Some((config.env.resolve_path(path), verify_from)),
            _ => None,
        };
        let extra_roots = bundle_from_verify
            .into_iter()
            .chain(env(SSL_CERT_FILE).map(|path| (config.env.resolve_path(&path), SSL_CERT_FILE)))
            .collect();
        let client_identity = env("SSL_CERTIFICATE")
            .map(|path| (path, "SSL_CERTIFICATE"))
            .or_else(|| {
                ls.ssl_certificate
                    .clone()
                    .map(|path| (path, "litellm_settings.ssl_certificate"))
            })
            .map(|(path, from)| (config.env.resolve_path(&path), from));
        Self {
            skip_verification: verify == Some(SslVerify::Switch(false)),
            extra_roots,
            client_identity,
        }
    }

    /// Says at start-up what these settings give up: with checks off, any
    /// server can stand in for an upstream.
    pub fn warn_if_unchecked(&self) {
        if self.skip_verification {
            tracing::warn!(
                "upstream TLS certificates are not checked (ssl_verify is false): any server \
                 can stand in for an upstream and read its prompts and keys"
            );
        }
    }

    /// `builder` with these settings; the error names the setting whose
    /// file cannot be read or holds no usable certificate.
    pub fn configure(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        if self.skip_verification {
            builder = builder.danger_accept_invalid_certs(true);
        }
        for (path, from) in &self.extra_roots {
            let roots = match ca_certificates(path) {
                Ok(roots) => roots,
                Err(why) if *from == SSL_CERT_FILE => {
                    tracing::warn!("{from}: {why}; its certificates are not trusted");
                    continue;
                }
                Err(why) => return Err(format!("{from}: {why}")),
            };
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        if let Some((path, from)) = &self.client_identity {
            let unusable = || {
                format!(
                    "{from}: {} does not hold a PEM client certificate and its private key \
                     (the two must match)",
                    path.display()
                )
            };
            let pem = read(path).map_err(|why| format!("{from}: {why}"))?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| unusable())?;
            // A key that does not match its certificate is found only when
            // a client is built: tried alone, so the error names the file.
            reqwest::Client::builder()
                .identity(identity.clone())
                .build()
                .map_err(|_| unusable())?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

/// The CA certificates of the PEM file at `path`: at least one, each of
/// which a client accepts as a root.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read(path)?;
    let roots = match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(roots) if !roots.is_empty() => roots,
        _ => {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
    };
    // A block that is PEM but not a certificate is found only when a
    // client is built: tried here, so the error names the file.
    roots
        .iter()
        .fold(reqwest::Client::builder(), |b, root| {
            b.add_root_certificate(root.clone())
        })
        .build()
        .map_err(|_| format!("{} holds a certificate that cannot be read", path.display()))?;
    Ok(roots)
}

/// The bytes of `path`, at most 16 MiB (a CA bundle is well under one).
fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    const MAX_BYTES: u64 = 16 << 20;
    let too_large = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len()
        > MAX_BYTES;
    if too_large {
        return Err(format!("{} is larger than 16 MiB", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load_str};
    use std::path::Path;

    fn settings(yaml: &str) -> UpstreamTls {
        let loaded = load_str(
            &format!("model_list: []\nlitellm_settings:\n{yaml}"),
            Path::new("/etc/conclave/config.yaml"),
            Env::beside(Path::new("/etc/conclave/config.yaml")).unwrap(),
        )
        .unwrap();
        UpstreamTls::from_config(&loaded.config)
    }

    #[test]
    fn ssl_verify_false_turns_checks_off_and_a_path_adds_roots() {
        // Only what the config says: the environment may name a bundle too.
        let from_config = |tls: &UpstreamTls| -> Vec<PathBuf> {
            tls.extra_roots
                .iter()
                .filter(|(_, from)| *from == "litellm_settings.ssl_verify")
                .map(|(path, _)| path.clone())
                .collect()
        };
        assert!(settings("  ssl_verify: false\n").skip_verification);
        assert!(settings("  ssl_verify: 'False'\n").skip_verification);
        let on = settings("  ssl_verify: true\n");
        assert!(!on.skip_verification && from_config(&on).is_empty());
        let bundle = settings("  ssl_verify: certs/ca.pem\n");
        assert!(!bundle.skip_verification);
        assert_eq!(
            from_config(&bundle),
            [PathBuf::from("/etc/conclave/certs/ca.pem")]
        );
    }

    #[test]
    fn ssl_verify_reads_numbers_as_switches_and_refuses_other_shapes() {
        assert!(settings("  ssl_verify: 0\n").skip_verification);
        assert!(!settings("  ssl_verify: 1\n").skip_verification);
        let refused = load_str(
            "model_list: []\nlitellm_settings:\n  ssl_verify: [1]\n",
            Path::new("c.yaml"),
            Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("litellm_settings.ssl_verify"), "{refused}");
        assert!(refused.contains("the path of a file"), "{refused}");
    }

    #[test]
    fn a_client_key_that_does_not_match_its_certificate_is_named() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
        let server_cert = std::fs::read_to_string(fixtures.join("upstream.pem")).unwrap();
        let client = std::fs::read_to_string(fixtures.join("client.pem")).unwrap();
        let client_key = &client[client.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
        let dir = std::env::temp_dir().join(format!("conclave-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mismatched = dir.join("mismatched.pem");
        std::fs::write(&mismatched, format!("{server_cert}{client_key}")).unwrap();
        let tls = UpstreamTls {
            client_identity: Some((mismatched, "litellm_settings.ssl_certificate")),
            ..UpstreamTls::default()
        };
        let why = tls.configure(reqwest::Client::builder()).unwrap_err();
        assert!(
            why.starts_with("litellm_settings.ssl_certificate:") && why.contains("must match"),
            "{why}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_client_certificate_is_read_relative_to_the_config() {
        let tls = settings("  ssl_certificate: client.pem\n");
        let (path, _) = tls.client_identity.unwrap();
        assert_eq!(path, Path::new("/etc/conclave/client.pem"));
    }

    #[test]
    fn unreadable_or_empty_files_are_named_with_their_setting() {
        let missing = UpstreamTls {
            extra_roots: vec![(
                PathBuf::from("/no/such/ca.pem"),
                "litellm_settings.ssl_verify",
            )],
            ..UpstreamTls::default()
        };
        let why = missing.configure(reqwest::Client::builder()).unwrap_err();
        assert!(
            why.starts_with("litellm_settings.ssl_verify: cannot read /no/such/ca.pem"),
            "{why}"
        );
        // A general-purpose variable naming a missing file is only warned about.
        let stale = UpstreamTls {
            extra_roots: vec![(PathBuf::from("/no/such/ca.pem"), SSL_CERT_FILE)],
            ..UpstreamTls::default()
        };
        assert!(stale.configure(reqwest::Client::builder()).is_ok());

        let dir = std::env::temp_dir().join(format!("conclave-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let no_roots = UpstreamTls {
            extra_roots: vec![(empty.clone(), "litellm_settings.ssl_verify")],
            ..UpstreamTls::default()
        };
        let why = no_roots.configure(reqwest::Client::builder()).unwrap_err();
        assert!(why.contains("holds no PEM certificate"), "{why}");
        let no_identity = UpstreamTls {
            client_identity: Some((empty, "litellm_settings.ssl_certificate")),
            ..UpstreamTls::default()
        };
        let why = no_identity
            .configure(reqwest::Client::builder())
            .unwrap_err();
        assert!(
            why.contains("client certificate and its private key"),
            "{why}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
