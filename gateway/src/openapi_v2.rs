//! The OpenAPI v2 document at `/openapi/v2`, in the protobuf form kubectl
//! asks for (gnostic's `openapi.v2.Document`). Pure, and hand-encoded: it
//! depends on no crate, so no protobuf toolchain enters the build.
//!
//! Why kubus serves it at all: kubectl 1.27 and 1.28 build their schema
//! validator (`apply`, `create`, `replace` with the default
//! `--validate=strict`, and `explain`) by fetching and parsing this
//! document first, and give up with an error when that fails, even though
//! they then ask the v3 documents (`crate::openapi`) whether the server
//! validates fields itself: without it they fail with "the server could
//! not find the requested resource". kubectl 1.29 and later fetch it only
//! when they need it and do without.
//!
//! What it says, and why:
//! - One path item per kind, whose `patch` operation is marked with
//!   `x-kubernetes-group-version-kind` and declares the `fieldValidation`
//!   query parameter. That is what kubectl's v2 check
//!   (`QueryParamVerifier.HasSupport`) looks for when the v3 check cannot
//!   answer: kubus's admission refuses unknown fields and wrong types
//!   itself, so kubectl should not validate on its side.
//! - No `definitions`. With none, kubectl finds no schema for any kind
//!   (`LookupResource` gives nil), skips client-side validation, and
//!   computes strategic merge patches from its compiled-in types, the same
//!   merge keys `kubus_api::patch` applies. `kubectl explain` reads the v3
//!   documents once this one parses.
//! - No `consumes` on the operations: kubectl then takes the patch type
//!   from its compiled-in types as well.
//!
//! The field numbers are those of gnostic's `openapiv2/OpenAPIv2.proto`
//! (identical in `github.com/google/gnostic` v0.5.7, which kubectl 1.27
//! uses, and `github.com/google/gnostic-models` v0.6.8, which 1.28 uses).
//! A vendor extension's value is an `Any` whose `yaml` field holds the
//! value as YAML, keys sorted, as the Kubernetes API server writes it.

/// Where kubectl asks for the document.
pub const PATH: &str = "/openapi/v2";
/// The media type kubectl asks for (its `Accept` header).
pub const ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The media type to answer with. Not the one asked for: kubectl parses
/// the response's `Content-Type` with Go's `mime.ParseMediaType`, which
/// refuses the `@`, and a refusal fails the request. The API server
/// answers both spellings with this one.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// `info.version`: the Kubernetes version served, as `/version` says.
fn info_version() -> String {
    format!("v1.{}.0-kubus", crate::KUBERNETES_MINOR)
}

/// The vendor extension naming the kind an operation acts on.
const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";
/// The vendor extension naming the operation's verb.
const ACTION_EXTENSION: &str = "x-kubernetes-action";
/// The query parameters every patch operation declares.
const PATCH_QUERY_PARAMS: [&str; 3] = crate::openapi::WRITE_PARAMS;

/// One served kind and the path of a single object of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindEntry {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// e.g. `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`.
    pub path: String,
}

/// Field numbers of the gnostic messages written here, named as in
/// `OpenAPIv2.proto`.
mod field {
    pub mod document {
        pub const SWAGGER: u32 = 1;
        pub const INFO: u32 = 2;
        pub const PATHS: u32 = 8;
    }
    pub mod info {
        pub const TITLE: u32 = 1;
        pub const VERSION: u32 = 2;
    }
    pub mod paths {
        pub const PATH: u32 = 2;
    }
    /// `NamedPathItem`, `NamedAny`, `NamedResponseValue` alike.
    pub mod named {
        pub const NAME: u32 = 1;
        pub const VALUE: u32 = 2;
    }
    pub mod path_item {
        pub const PATCH: u32 = 8;
    }
    pub mod operation {
        pub const PARAMETERS: u32 = 8;
        pub const RESPONSES: u32 = 9;
        pub const VENDOR_EXTENSION: u32 = 13;
    }
    pub mod parameters_item {
        pub const PARAMETER: u32 = 1;
    }
    pub mod parameter {
        pub const NON_BODY_PARAMETER: u32 = 2;
    }
    pub mod non_body_parameter {
        pub const QUERY_PARAMETER_SUB_SCHEMA: u32 = 3;
    }
    pub mod query_parameter_sub_schema {
        pub const IN: u32 = 2;
        pub const NAME: u32 = 4;
        pub const TYPE: u32 = 6;
        pub const UNIQUE_ITEMS: u32 = 20;
    }
    pub mod any {
        pub const YAML: u32 = 2;
    }
    pub mod responses {
        pub const RESPONSE_CODE: u32 = 1;
    }
    pub mod response_value {
        pub const RESPONSE: u32 = 1;
    }
    pub mod response {
        pub const DESCRIPTION: u32 = 1;
    }
}

/// The document for `kinds`, protobuf-encoded. Path items come in the
/// order given; kubectl uses the first one marked with a kind.
pub fn document(kinds: &[KindEntry]) -> Vec<u8> {
    use field::document as d;
    let mut w = Writer::default();
    w.string(d::SWAGGER, "2.0");
    w.message(d::INFO, |w| {
        w.string(field::info::TITLE, "Kubernetes");
        w.string(field::info::VERSION, &info_version());
    });
    w.message(d::PATHS, |w| {
        for k in kinds {
            w.message(field::paths::PATH, |w| {
                w.string(field::named::NAME, &k.path);
                w.message(field::named::VALUE, |w| {
                    w.message(field::path_item::PATCH, |w| patch_operation(w, k));
                });
            });
        }
    });
    w.into_bytes()
}

/// A patch operation as kubectl's v2 check reads it.
fn patch_operation(w: &mut Writer, k: &KindEntry) {
    use field::operation as o;
    for name in PATCH_QUERY_PARAMS {
        w.message(o::PARAMETERS, |w| {
            w.message(field::parameters_item::PARAMETER, |w| {
                w.message(field::parameter::NON_BODY_PARAMETER, |w| {
                    w.message(field::non_body_parameter::QUERY_PARAMETER_SUB_SCHEMA, |w| {
                        use field::query_parameter_sub_schema as q;
                        w.string(q::IN, "query");
                        w.string(q::NAME, name);
                        w.string(q::TYPE, "string");
                        w.bool(q::UNIQUE_ITEMS, true);
                    });
                });
            });
        });
    }
    w.message(o::RESPONSES, |w| {
        w.message(field::responses::RESPONSE_CODE, |w| {
            w.string(field::named::NAME, "200");
            w.message(field::named::VALUE, |w| {
                w.message(field::response_value::RESPONSE, |w| {
                    w.string(field::response::DESCRIPTION, "OK");
                });
            });
        });
    });
    vendor_extension(w, o::VENDOR_EXTENSION, ACTION_EXTENSION, "patch\n");
    let gvk = format!(
        "group: {}\nkind: {}\nversion: {}\n",
        yaml_scalar(&k.group),
        yaml_scalar(&k.kind),
        yaml_scalar(&k.version)
    );
    vendor_extension(w, o::VENDOR_EXTENSION, GVK_EXTENSION, &gvk);
}

/// A `NamedAny` whose value is given as YAML.
fn vendor_extension(w: &mut Writer, field_number: u32, name: &str, yaml: &str) {
    w.message(field_number, |w| {
        w.string(field::named::NAME, name);
        w.message(field::named::VALUE, |w| w.string(field::any::YAML, yaml));
    });
}

/// `s` as a YAML scalar that reads back as the same string: plain when
/// it is a name (letters, digits, `.`, `-`, `_`, starting with a letter)
/// that YAML 1.1 would not read as a boolean or null, double-quoted
/// otherwise (the empty core group is `""`, as the API server writes it).
fn yaml_scalar(s: &str) -> String {
    const RESERVED: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Protobuf wire types used here.
const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

/// A protobuf encoder for the few shapes this document needs. Like
/// proto3 itself, it leaves out empty strings and `false`.
#[derive(Debug, Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            // The low seven bits, with the continuation bit.
            self.buf.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field_number: u32, wire: u32) {
        self.varint(u64::from((field_number << 3) | wire));
    }

    fn bytes(&mut self, field_number: u32, b: &[u8]) {
        self.key(field_number, WIRE_LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn string(&mut self, field_number: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field_number, s.as_bytes());
        }
    }

    fn bool(&mut self, field_number: u32, b: bool) {
        if b {
            self.key(field_number, WIRE_VARINT);
            self.varint(1);
        }
    }

    /// A nested message, written by `build` (always present, even empty:
    /// a present empty message differs from an absent one).
    fn message(&mut self, field_number: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(field_number, &inner.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group, version and kind.
    type Gvk<'a> = (&'a str, &'a str, &'a str);

    /// One decoded field: a varint, or the bytes of a length-delimited one.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Value<'a> {
        Varint(u64),
        Len(&'a [u8]),
    }

    fn read_varint(buf: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*at).expect("varint runs past the end");
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than ten bytes");
    }

    /// Every field of one message, in order; panics on anything but
    /// well-formed varint and length-delimited fields.
    fn fields(buf: &[u8]) -> Vec<(u32, Value<'_>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let key = read_varint(buf, &mut at);
            let number = u32::try_from(key >> 3).expect("field number");
            assert!(number > 0, "field number 0");
            match key & 7 {
                0 => out.push((number, Value::Varint(read_varint(buf, &mut at)))),
                2 => {
                    let len = usize::try_from(read_varint(buf, &mut at)).expect("length");
                    let end = at.checked_add(len).expect("length overflows");
                    out.push((
                        number,
                        Value::Len(buf.get(at..end).expect("length past end")),
                    ));
                    at = end;
                }
                w => panic!("unexpected wire type {w} for field {number}"),
            }
        }
        out
    }

    /// Every length-delimited field `number` of `buf` (repeated or not).
    fn all(buf: &[u8], number: u32) -> Vec<&[u8]> {
        fields(buf)
            .into_iter()
            .filter(|(n, _)| *n == number)
            .map(|(n, v)| match v {
                Value::Len(b) => b,
                Value::Varint(_) => panic!("field {n} is a varint"),
            })
            .collect()
    }

    /// The last length-delimited field `number`, as protobuf reads a
    /// singular field; an empty message when absent, as Go's getters do.
    fn one(buf: &[u8], number: u32) -> &[u8] {
        all(buf, number).last().copied().unwrap_or(&[])
    }

    fn text(buf: &[u8], number: u32) -> &str {
        std::str::from_utf8(one(buf, number)).expect("utf-8")
    }

    fn varint_field(buf: &[u8], number: u32) -> Option<u64> {
        fields(buf).into_iter().rev().find_map(|(n, v)| match v {
            Value::Varint(x) if n == number => Some(x),
            _ => None,
        })
    }

    /// The GVK an extension list names, read as kubectl's
    /// `hasGVKExtension` does: the first non-empty
    /// `x-kubernetes-group-version-kind` decides.
    fn gvk_of(extensions: &[&[u8]]) -> Option<(String, String, String)> {
        let yaml = extensions
            .iter()
            .filter(|e| text(e, 1) == GVK_EXTENSION)
            .map(|e| text(one(e, 2), 2))
            .find(|y| !y.is_empty())?;
        let mut group = String::new();
        let mut version = String::new();
        let mut kind = String::new();
        for line in yaml.lines() {
            let (k, v) = line.split_once(": ").expect("key: value");
            let v = v.trim_matches('"').to_string();
            match k {
                "group" => group = v,
                "version" => version = v,
                "kind" => kind = v,
                other => panic!("unexpected key {other}"),
            }
        }
        Some((group, version, kind))
    }

    /// kubectl's `supportsQueryParam` (cli-runtime
    /// `pkg/resource/query_param_verifier.go`, release-1.27 and 1.28),
    /// field by field: `Some(supported)` for the first path whose patch
    /// operation names the GVK, `None` when none does.
    fn supports_query_param(doc: &[u8], gvk: Gvk<'_>, param: &str) -> Option<bool> {
        for path in all(one(doc, 8), 2) {
            let patch = one(one(path, 2), 8);
            let Some((g, v, k)) = gvk_of(&all(patch, 13)) else {
                continue;
            };
            if (g.as_str(), v.as_str(), k.as_str()) != gvk {
                continue;
            }
            return Some(all(patch, 8).into_iter().any(|item| {
                let query = one(one(one(item, 1), 2), 3);
                text(query, 4) == param
            }));
        }
        None
    }

    fn kinds() -> Vec<KindEntry> {
        let entry = |group: &str, version: &str, kind: &str, path: &str| KindEntry {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            path: path.into(),
        };
        vec![
            entry("", "v1", "Namespace", "/api/v1/namespaces/{name}"),
            entry(
                "",
                "v1",
                "ConfigMap",
                "/api/v1/namespaces/{namespace}/configmaps/{name}",
            ),
            entry(
                "apps",
                "v1",
                "Deployment",
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            ),
            entry(
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                "/apis/scheduling.k8s.io/v1/priorityclasses/{name}",
            ),
        ]
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, want) in cases {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(w.into_bytes(), want, "{v}");
        }
    }

    #[test]
    fn fields_encode_as_protobuf_does() {
        let mut w = Writer::default();
        // NamedAny{name: "a", value: Any{yaml: "b"}}
        w.string(1, "a");
        w.message(2, |w| w.string(2, "b"));
        // Field 16 needs a two-byte key; 20 as a bool.
        w.string(16, "x");
        w.bool(20, true);
        w.bool(21, false);
        w.string(22, "");
        w.message(23, |_| {});
        assert_eq!(
            w.into_bytes(),
            [
                0x0a, 0x01, b'a', 0x12, 0x03, 0x12, 0x01, b'b', 0x82, 0x01, 0x01, b'x', 0xa0, 0x01,
                0x01, 0xba, 0x01, 0x00
            ]
        );
    }

    #[test]
    fn long_fields_get_multi_byte_lengths() {
        let long = "p".repeat(300);
        let mut w = Writer::default();
        w.string(1, &long);
        let bytes = w.into_bytes();
        assert_eq!(bytes.get(..3), Some(&[0x0a, 0xac, 0x02][..]));
        assert_eq!(text(&bytes, 1), long);
    }

    #[test]
    fn the_document_names_swagger_info_and_paths_only() {
        let doc = document(&kinds());
        let numbers: Vec<u32> = fields(&doc).iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 8]);
        assert_eq!(text(&doc, 1), "2.0");
        let info = one(&doc, 2);
        assert_eq!(text(info, 1), "Kubernetes");
        assert_eq!(text(info, 2), info_version());
        let paths = all(one(&doc, 8), 2);
        let names: Vec<&str> = paths.iter().map(|p| text(p, 1)).collect();
        assert_eq!(
            names,
            kinds().iter().map(|k| k.path.as_str()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn kubectl_finds_field_validation_on_every_patch_operation() {
        let doc = document(&kinds());
        let cases: [(Gvk<'_>, &str, Option<bool>); 8] = [
            (("apps", "v1", "Deployment"), "fieldValidation", Some(true)),
            (("", "v1", "ConfigMap"), "fieldValidation", Some(true)),
            (("", "v1", "Namespace"), "fieldValidation", Some(true)),
            (
                ("scheduling.k8s.io", "v1", "PriorityClass"),
                "fieldValidation",
                Some(true),
            ),
            (("apps", "v1", "Deployment"), "dryRun", Some(true)),
            (("apps", "v1", "Deployment"), "force", Some(false)),
            (("apps", "v1", "StatefulSet"), "fieldValidation", None),
            (("apps", "v2", "Deployment"), "fieldValidation", None),
        ];
        for (gvk, param, want) in cases {
            assert_eq!(
                supports_query_param(&doc, gvk, param),
                want,
                "{gvk:?} {param}"
            );
        }
    }

    #[test]
    fn the_patch_operation_is_shaped_as_the_api_servers() {
        let doc = document(&kinds());
        let path = all(one(&doc, 8), 2)
            .into_iter()
            .find(|p| text(p, 1) == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .expect("deployment path");
        let item = one(path, 2);
        let present: Vec<u32> = fields(item).iter().map(|(n, _)| *n).collect();
        assert_eq!(present, [8], "only patch");
        let patch = one(item, 8);
        let numbers: Vec<u32> = fields(patch).iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [8, 8, 8, 9, 13, 13]);

        let extensions = all(patch, 13);
        let by_name: Vec<(&str, &str)> = extensions
            .iter()
            .map(|e| (text(e, 1), text(one(e, 2), 2)))
            .collect();
        assert_eq!(
            by_name,
            [
                ("x-kubernetes-action", "patch\n"),
                (
                    "x-kubernetes-group-version-kind",
                    "group: apps\nkind: Deployment\nversion: v1\n"
                ),
            ]
        );

        let params = all(patch, 8);
        assert_eq!(params.len(), PATCH_QUERY_PARAMS.len());
        for (item, name) in params.into_iter().zip(PATCH_QUERY_PARAMS) {
            let parameter = one(item, 1);
            assert!(all(parameter, 1).is_empty(), "not a body parameter");
            let query = one(one(parameter, 2), 3);
            assert_eq!(text(query, 4), name);
            assert_eq!(text(query, 2), "query");
            assert_eq!(text(query, 6), "string");
            assert_eq!(varint_field(query, 20), Some(1));
        }

        let code = one(one(patch, 9), 1);
        assert_eq!(text(code, 1), "200");
        assert_eq!(text(one(one(code, 2), 1), 1), "OK");
    }

    #[test]
    fn the_core_group_is_an_empty_quoted_string() {
        let doc = document(&kinds());
        let patch = one(one(all(one(&doc, 8), 2)[1], 2), 8);
        let gvk = all(patch, 13)
            .into_iter()
            .find(|e| text(e, 1) == GVK_EXTENSION)
            .map(|e| text(one(e, 2), 2).to_string());
        assert_eq!(
            gvk.as_deref(),
            Some("group: \"\"\nkind: ConfigMap\nversion: v1\n")
        );
    }

    #[test]
    fn yaml_scalars_read_back_as_strings() {
        let cases = [
            ("apps", "apps"),
            ("scheduling.k8s.io", "scheduling.k8s.io"),
            ("v1beta1", "v1beta1"),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("1", "\"1\""),
            ("a b", "\"a b\""),
            ("a\"b\\", "\"a\\\"b\\\\\""),
        ];
        for (s, want) in cases {
            assert_eq!(yaml_scalar(s), want, "{s}");
        }
    }

    #[test]
    fn no_kinds_is_still_a_document() {
        let doc = document(&[]);
        assert_eq!(text(&doc, 1), "2.0");
        assert!(all(one(&doc, 8), 2).is_empty());
        assert_eq!(
            supports_query_param(&doc, ("", "v1", "Namespace"), "fieldValidation"),
            None
        );
    }
}
