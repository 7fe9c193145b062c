//! Secrets sealed at rest: the objects of the resources an
//! `EncryptionConfiguration` names (Kubernetes' own file, `apiserver.config.k8s.io/v1`)
//! are encrypted with AES-256-GCM before the store proposes them, so its
//! Raft log, RocksDB and backups hold ciphertext; they are decrypted where
//! the store reads them back ([`Keyring::open`]).
//!
//! As Kubernetes' `aesgcm` provider: the first provider of a resource
//! writes (an `aesgcm` provider writes with its first key; `identity`
//! writes plain bytes), every listed key reads, and a plain stored value
//! is read only while `identity` is listed. A sealed value is
//! `kubus:enc:aesgcm:v1:<key name>:` + a random 96-bit nonce + the
//! ciphertext and tag, with the store key as associated data (a value
//! copied under another key does not open).
//!
//! Rotation ([`Keyring::change`]): add a key as a read key on every peer,
//! make it the writing key, then rewrite every object not sealed with it
//! ([`reseal_plan`], carried out by the admin service in bounded batches).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use kubus_api::Kind;
use serde::{Deserialize, Serialize};

/// What every sealed value starts with, before its key's name.
pub const SEALED_PREFIX: &[u8] = b"kubus:enc:aesgcm:v1:";
/// AES-GCM's nonce, in bytes.
const NONCE_BYTES: usize = 12;
/// An AES-256 key, in bytes.
const KEY_BYTES: usize = 32;
/// The `apiVersion` and `kind` of the file.
const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";
/// The largest configuration file read.
const FILE_BYTES_MAX: u64 = 1 << 20;

/// Why sealing, opening or the configuration failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("encryption configuration {file}: {message}")]
    Config { file: String, message: String },
    #[error(
        "{key} is sealed with key {name:?}, which the encryption configuration does not hold \
         (every store peer needs every key still in use)"
    )]
    UnknownKey { key: String, name: String },
    #[error("{key} is stored unencrypted and the encryption configuration lists no identity provider for it")]
    PlainRefused { key: String },
    #[error("{key} does not open with key {name:?} (corrupt, or moved from another key)")]
    Corrupt { key: String, name: String },
    #[error("{key} could not be sealed: {message}")]
    Seal { key: String, message: String },
    #[error("{0}")]
    Change(String),
}

/// The file, as Kubernetes writes it (JSON is YAML too).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<ResourceConfig>,
}

/// The providers of some resources, the first of which writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub resources: Vec<String>,
    pub providers: Vec<Provider>,
}

/// One provider: exactly one of its fields is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<AesGcm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// The `aesgcm` provider's keys; the first encrypts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AesGcm {
    pub keys: Vec<NamedKey>,
}

/// The `identity` provider (plain bytes): no settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {}

/// A named key (`secret`: 32 bytes, base64), as the file and the
/// rotation request carry it.
pub use kubus_bus::protocol::EncryptionKey as NamedKey;

/// A fresh random key named `name`.
pub fn generate_key(name: &str) -> NamedKey {
    let key = Aes256Gcm::generate_key(OsRng);
    NamedKey {
        name: name.to_string(),
        secret: base64::engine::general_purpose::STANDARD.encode(key),
    }
}

impl EncryptionConfiguration {
    /// What `kubus up` writes: Secrets sealed with one fresh key, plain
    /// values still read (those written before encryption was on).
    pub fn generated(key: NamedKey) -> EncryptionConfiguration {
        EncryptionConfiguration {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            resources: vec![ResourceConfig {
                resources: vec!["secrets".into()],
                providers: vec![
                    Provider {
                        aesgcm: Some(AesGcm { keys: vec![key] }),
                        identity: None,
                    },
                    Provider {
                        aesgcm: None,
                        identity: Some(Identity {}),
                    },
                ],
            }],
        }
    }
}

/// The rule of one resource: the store key prefix it covers.
#[derive(Debug, Clone)]
struct Rule {
    prefix: String,
    /// The key that writes (`None`: identity writes).
    write: Option<String>,
    /// Whether plain values are read.
    identity: bool,
}

/// The configuration compiled: rules and every key by name.
#[derive(Clone, Default)]
struct Compiled {
    rules: Vec<Rule>,
    keys: HashMap<String, Aes256Gcm>,
}

/// Compile `config` (from `file`, for errors): every rule Kubernetes
/// checks, and kubus's own (known resources; a key name in one place).
fn compile(config: &EncryptionConfiguration, file: &str) -> Result<Compiled, SealError> {
    let err = |message: String| SealError::Config {
        file: file.to_string(),
        message,
    };
    if config.api_version != API_VERSION || config.kind != KIND {
        return Err(err(format!(
            "apiVersion/kind {}/{}: must be {API_VERSION}/{KIND}",
            config.api_version, config.kind
        )));
    }
    let mut out = Compiled::default();
    for (i, rc) in config.resources.iter().enumerate() {
        if rc.resources.is_empty() || rc.providers.is_empty() {
            return Err(err(format!(
                "resources[{i}]: needs at least one resource and one provider"
            )));
        }
        let mut write = None;
        let mut identity = false;
        for (j, p) in rc.providers.iter().enumerate() {
            let at = format!("resources[{i}].providers[{j}]");
            match (&p.aesgcm, &p.identity) {
                (Some(aes), None) => {
                    if aes.keys.is_empty() {
                        return Err(err(format!("{at}.aesgcm.keys: at least one key")));
                    }
                    for (k, named) in aes.keys.iter().enumerate() {
                        let at = format!("{at}.aesgcm.keys[{k}]");
                        let cipher = cipher_of(named).map_err(|m| err(format!("{at}: {m}")))?;
                        if out.keys.insert(named.name.clone(), cipher).is_some() {
                            return Err(err(format!(
                                "{at}.name {:?}: key names must be unique",
                                named.name
                            )));
                        }
                    }
                    if j == 0 {
                        write = Some(aes.keys[0].name.clone());
                    }
                }
                (None, Some(_)) => identity = true,
                _ => {
                    return Err(err(format!(
                        "{at}: exactly one of aesgcm or identity (kubus supports these two \
                         providers)"
                    )))
                }
            }
        }
        for (j, word) in rc.resources.iter().enumerate() {
            let kind = resource_kind(word)
                .map_err(|m| err(format!("resources[{i}].resources[{j}] {word:?}: {m}")))?;
            let prefix = format!("/{}/", kind.resource());
            if out.rules.iter().any(|r| r.prefix == prefix) {
                return Err(err(format!(
                    "resources[{i}].resources[{j}] {word:?}: named twice"
                )));
            }
            out.rules.push(Rule {
                prefix,
                write: write.clone(),
                identity,
            });
        }
    }
    Ok(out)
}

/// The kind a resource entry names: `secrets`, or `deployments.apps`.
fn resource_kind(word: &str) -> Result<Kind, String> {
    let (plural, group) = word.split_once('.').unwrap_or((word, ""));
    if plural.contains('*') || group.contains('*') {
        return Err("kubus encrypts named resources (e.g. secrets), not wildcards".into());
    }
    Kind::ALL
        .iter()
        .copied()
        .find(|k| k.resource() == plural && k.group() == group)
        .ok_or_else(|| "not a resource kubus serves (plural, with its group if not core)".into())
}

fn cipher_of(named: &NamedKey) -> Result<Aes256Gcm, String> {
    if named.name.is_empty() || named.name.contains(':') {
        return Err(format!(
            "name {:?}: must be non-empty and hold no ':'",
            named.name
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(named.secret.trim())
        .map_err(|e| format!("secret of {:?} is not base64: {e}", named.name))?;
    if bytes.len() != KEY_BYTES {
        return Err(format!(
            "secret of {:?} is {} bytes; aesgcm here takes 32 (AES-256)",
            named.name,
            bytes.len()
        ));
    }
    Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)))
}

/// Read and compile a configuration file.
pub fn read_config(path: &Path) -> Result<EncryptionConfiguration, SealError> {
    let file = path.display().to_string();
    let err = |message: String| SealError::Config {
        file: file.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > FILE_BYTES_MAX {
        return Err(err(format!("larger than {FILE_BYTES_MAX} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let config: EncryptionConfiguration =
        serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
    compile(&config, &file)?;
    Ok(config)
}

/// Write `config` to `path` (0600, replaced atomically).
pub fn write_config(path: &Path, config: &EncryptionConfiguration) -> Result<(), SealError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| SealError::Config {
        file: path.display().to_string(),
        message: e.to_string(),
    };
    let text = serde_json::to_string_pretty(config).map_err(|e| SealError::Config {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The name of the key `value` is sealed with, if it is sealed.
pub fn sealed_with(value: &[u8]) -> Option<&str> {
    let rest = value.strip_prefix(SEALED_PREFIX)?;
    let end = rest.iter().position(|b| *b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A change to the keys of every `aesgcm` provider (rotation's steps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyChange {
    /// Add a key after the others: it reads, it does not write yet.
    Add(NamedKey),
    /// Make the named key the first: it writes.
    Promote(String),
}

/// `config` with `change` made to each of its `aesgcm` providers, or why
/// not: there must be one, an added name must be new, a promoted one held.
pub fn changed(
    mut config: EncryptionConfiguration,
    change: &KeyChange,
) -> Result<EncryptionConfiguration, SealError> {
    let mut providers = 0;
    for p in config
        .resources
        .iter_mut()
        .flat_map(|r| r.providers.iter_mut())
    {
        let Some(aes) = p.aesgcm.as_mut() else {
            continue;
        };
        providers += 1;
        match change {
            KeyChange::Add(key) => {
                if aes.keys.iter().any(|k| k.name == key.name) {
                    if aes.keys.iter().any(|k| k == key) {
                        continue; // added before: a retried rotation
                    }
                    return Err(SealError::Change(format!(
                        "a different key named {:?} is already configured",
                        key.name
                    )));
                }
                aes.keys.push(key.clone());
            }
            KeyChange::Promote(name) => {
                let Some(at) = aes.keys.iter().position(|k| &k.name == name) else {
                    return Err(SealError::Change(format!(
                        "no key named {name:?} is configured (add it first)"
                    )));
                };
                let key = aes.keys.remove(at);
                aes.keys.insert(0, key);
            }
        }
    }
    if providers == 0 {
        return Err(SealError::Change(
            "the encryption configuration has no aesgcm provider: nothing is encrypted to rotate"
                .into(),
        ));
    }
    Ok(config)
}

/// The keys of one store peer: seals and opens values by their store key.
/// Cloning shares it; [`Keyring::change`] and [`Keyring::reload`] replace
/// what every clone uses.
#[derive(Clone, Default)]
pub struct Keyring {
    file: Option<PathBuf>,
    compiled: Arc<RwLock<Arc<Compiled>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// No encryption: everything is stored and read plain.
    pub fn plain() -> Keyring {
        Keyring::default()
    }

    /// The keys of the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Keyring, SealError> {
        let config = read_config(path)?;
        let compiled = compile(&config, &path.display().to_string())?;
        Ok(Keyring {
            file: Some(path.to_path_buf()),
            compiled: Arc::new(RwLock::new(Arc::new(compiled))),
        })
    }

    /// The keys of `path`, writing a fresh configuration there first if
    /// there is none (what `kubus up` does).
    pub fn load_or_create(path: &Path) -> Result<Keyring, SealError> {
        if !path.exists() {
            let name = format!("key-{}", jiff::Timestamp::now().as_second());
            write_config(
                path,
                &EncryptionConfiguration::generated(generate_key(&name)),
            )?;
        }
        Keyring::load(path)
    }

    /// The configuration file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn current(&self) -> Arc<Compiled> {
        match self.compiled.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, compiled: Compiled) {
        match self.compiled.write() {
            Ok(mut c) => *c = Arc::new(compiled),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(compiled),
        }
    }

    /// Read the file again (after an operator's edit).
    pub fn reload(&self) -> Result<(), SealError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let config = read_config(path)?;
        self.replace(compile(&config, &path.display().to_string())?);
        Ok(())
    }

    /// Read the file again, make `change` to it, write it back and use it.
    pub fn change(&self, change: &KeyChange) -> Result<(), SealError> {
        let Some(path) = &self.file else {
            return Err(SealError::Change(
                "this store peer has no encryption configuration \
                 (--encryption-provider-config): Secrets are stored unencrypted"
                    .into(),
            ));
        };
        let config = changed(read_config(path)?, change)?;
        let compiled = compile(&config, &path.display().to_string())?;
        write_config(path, &config)?;
        self.replace(compiled);
        Ok(())
    }

    /// Every configured key's name, and the writing key of each covered
    /// resource prefix (`None`: written plain).
    pub fn describe(&self) -> (Vec<String>, Vec<(String, Option<String>)>) {
        let c = self.current();
        let mut names: Vec<String> = c.keys.keys().cloned().collect();
        names.sort();
        let rules = c
            .rules
            .iter()
            .map(|r| (r.prefix.clone(), r.write.clone()))
            .collect();
        (names, rules)
    }

    /// The prefixes whose objects are sealed, each with its writing key.
    pub fn sealed_prefixes(&self) -> Vec<(String, String)> {
        self.current()
            .rules
            .iter()
            .filter_map(|r| Some((r.prefix.clone(), r.write.clone()?)))
            .collect()
    }

    /// `value` as stored under `key`: sealed when its resource is.
    pub fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, SealError> {
        let c = self.current();
        let Some(name) = c
            .rules
            .iter()
            .find(|r| key.starts_with(&r.prefix))
            .and_then(|r| r.write.as_ref())
        else {
            return Ok(value);
        };
        let Some(cipher) = c.keys.get(name) else {
            return Err(SealError::UnknownKey {
                key: key.to_string(),
                name: name.clone(),
            });
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &value,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|e| SealError::Seal {
                key: key.to_string(),
                message: e.to_string(),
            })?;
        let mut out =
            Vec::with_capacity(SEALED_PREFIX.len() + name.len() + 1 + NONCE_BYTES + sealed.len());
        out.extend_from_slice(SEALED_PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain bytes of `value`, stored under `key`.
    pub fn open<'a>(
        &self,
        key: &str,
        value: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, SealError> {
        let Some(name) = sealed_with(value) else {
            let c = self.current();
            let refused = c
                .rules
                .iter()
                .any(|r| key.starts_with(&r.prefix) && !r.identity);
            if refused {
                return Err(SealError::PlainRefused {
                    key: key.to_string(),
                });
            }
            return Ok(std::borrow::Cow::Borrowed(value));
        };
        let c = self.current();
        let corrupt = || SealError::Corrupt {
            key: key.to_string(),
            name: name.to_string(),
        };
        let Some(cipher) = c.keys.get(name) else {
            return Err(SealError::UnknownKey {
                key: key.to_string(),
                name: name.to_string(),
            });
        };
        let body = &value[SEALED_PREFIX.len() + name.len() + 1..];
        if body.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map(std::borrow::Cow::Owned)
            .map_err(|_| corrupt())
    }
}

/// Whether the object stored as `value` must be rewritten to be sealed
/// with `write` (the writing key of its resource).
pub fn needs_reseal(value: &[u8], write: &str) -> bool {
    sealed_with(value) != Some(write)
}

/// How many objects of one listing are sealed with each key (`"identity"`
/// for plain ones).
pub fn count_by_key<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for v in values {
        *out.entry(sealed_with(v).unwrap_or("identity").to_string())
            .or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(config: &EncryptionConfiguration) -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("enc.yaml");
        write_config(&path, config).expect("write");
        let k = Keyring::load(&path).expect("load");
        (dir, k)
    }

    #[test]
    fn secrets_are_sealed_and_open_again_other_kinds_stay_plain() {
        let (_d, k) = keyring(&EncryptionConfiguration::generated(generate_key("k1")));
        let plain = b"canary-value".to_vec();
        let sealed = k.seal("/secrets/default/s", plain.clone()).expect("seal");
        assert_eq!(sealed_with(&sealed), Some("k1"));
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(
            k.open("/secrets/default/s", &sealed)
                .expect("open")
                .as_ref(),
            plain.as_slice()
        );
        // the store key is bound in: a copy elsewhere does not open
        assert!(matches!(
            k.open("/secrets/default/other", &sealed),
            Err(SealError::Corrupt { .. })
        ));
        let cm = k
            .seal("/configmaps/default/c", plain.clone())
            .expect("seal");
        assert_eq!(cm, plain);
        // plain secrets still read: identity is listed
        assert_eq!(
            k.open("/secrets/default/old", &plain)
                .expect("open")
                .as_ref(),
            plain.as_slice()
        );
    }

    #[test]
    fn rotation_adds_then_promotes_and_old_values_still_open() {
        let (_d, k) = keyring(&EncryptionConfiguration::generated(generate_key("k1")));
        let old = k.seal("/secrets/a/b", b"x".to_vec()).expect("seal");
        let k2 = generate_key("k2");
        k.change(&KeyChange::Add(k2.clone())).expect("add");
        // retrying the same add is harmless; a different key of that name is not
        k.change(&KeyChange::Add(k2)).expect("add again");
        assert!(k.change(&KeyChange::Add(generate_key("k2"))).is_err());
        assert_eq!(
            sealed_with(&k.seal("/secrets/a/b", b"x".to_vec()).expect("seal")),
            Some("k1")
        );
        k.change(&KeyChange::Promote("k2".into())).expect("promote");
        let new = k.seal("/secrets/a/b", b"x".to_vec()).expect("seal");
        assert_eq!(sealed_with(&new), Some("k2"));
        assert!(needs_reseal(&old, "k2") && !needs_reseal(&new, "k2"));
        assert_eq!(k.open("/secrets/a/b", &old).expect("old").as_ref(), b"x");
        // the file holds the change: a fresh load agrees
        let again = Keyring::load(k.file().expect("file")).expect("reload");
        assert_eq!(
            sealed_with(&again.seal("/secrets/a/b", b"x".to_vec()).expect("seal")),
            Some("k2")
        );
        assert!(matches!(
            k.change(&KeyChange::Promote("k9".into())),
            Err(SealError::Change(_))
        ));
    }

    #[test]
    fn without_identity_plain_values_are_refused_and_unknown_keys_named() {
        let mut config = EncryptionConfiguration::generated(generate_key("k1"));
        config.resources[0].providers.truncate(1);
        let (_d, k) = keyring(&config);
        assert_eq!(
            k.open("/secrets/a/b", b"plain"),
            Err(SealError::PlainRefused {
                key: "/secrets/a/b".into()
            })
        );
        let other = keyring(&EncryptionConfiguration::generated(generate_key("k9")))
            .1
            .seal("/secrets/a/b", b"x".to_vec())
            .expect("seal");
        assert_eq!(
            k.open("/secrets/a/b", &other),
            Err(SealError::UnknownKey {
                key: "/secrets/a/b".into(),
                name: "k9".into()
            })
        );
        // no configuration: plain both ways
        let p = Keyring::plain();
        assert_eq!(p.seal("/secrets/a/b", b"x".to_vec()).expect("seal"), b"x");
    }

    #[test]
    fn bad_configurations_are_named() {
        let good = EncryptionConfiguration::generated(generate_key("k1"));
        let mut short = good.clone();
        short.resources[0].providers[0]
            .aesgcm
            .as_mut()
            .expect("aes")
            .keys[0]
            .secret = "c2hvcnQ=".into();
        let mut wildcard = good.clone();
        wildcard.resources[0].resources = vec!["*.*".into()];
        let mut unknown = good.clone();
        unknown.resources[0].resources = vec!["secret".into(), "widgets".into()];
        let mut twice = good.clone();
        twice.resources[0].resources = vec!["secrets".into(), "secrets".into()];
        let mut both = good.clone();
        both.resources[0].providers[1].aesgcm = good.resources[0].providers[0].aesgcm.clone();
        let cases = [
            (
                short,
                "resources[0].providers[0].aesgcm.keys[0]: secret of \"k1\" is 5 bytes",
            ),
            (
                wildcard,
                "resources[0].resources[0] \"*.*\": kubus encrypts named resources",
            ),
            (
                unknown,
                "resources[0].resources[0] \"secret\": not a resource kubus serves",
            ),
            (twice, "resources[0].resources[1] \"secrets\": named twice"),
            (
                both,
                "resources[0].providers[1]: exactly one of aesgcm or identity",
            ),
        ];
        for (config, want) in cases {
            let got = compile(&config, "f").err().map(|e| e.to_string());
            assert!(
                got.as_deref().is_some_and(|g| g.contains(want)),
                "{got:?} should say {want:?}"
            );
        }
        assert!(compile(&good, "f").is_ok());
        // Kubernetes' own file parses, and an unsupported provider is named
        let yaml = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                    resources:\n- resources: [secrets, deployments.apps]\n  providers:\n  \
                    - aescbc:\n      keys: []\n";
        let err = serde_saphyr::from_str::<EncryptionConfiguration>(yaml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("aescbc"), "{err}");
    }

    #[test]
    fn counts_by_key() {
        let (_d, k) = keyring(&EncryptionConfiguration::generated(generate_key("k1")));
        let a = k.seal("/secrets/a/b", b"x".to_vec()).expect("seal");
        let counts = count_by_key([a.as_slice(), b"plain".as_slice(), a.as_slice()]);
        assert_eq!(counts.get("k1"), Some(&2));
        assert_eq!(counts.get("identity"), Some(&1));
    }
}
