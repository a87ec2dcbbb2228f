//! `--cache-to` and `--cache-from` values in buildx's syntax: `type=T,key=value,...`, or
//! a bare reference (a registry cache, or an image whose config holds lb's records).

use std::path::PathBuf;
use std::str::FromStr;

use lb_layerstore::{LayerCompression, Reference};

use crate::Error;

/// Which steps an export keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the final image (buildx's default).
    #[default]
    Min,
    /// Every layer step of every stage the build ran or found cached.
    Max,
}

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// A reference in a registry: a cache manifest pushed there.
    Registry(Reference),
    /// A directory: an OCI image layout holding the cache manifest.
    Local(PathBuf),
    /// The built image's own config (pushed with the image).
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub target: ExportTarget,
    pub mode: CacheMode,
    /// An OCI image manifest (true, the default) or BuildKit 0.8's OCI index form.
    pub image_manifest: bool,
    /// How layers kept uncompressed go into the cache.
    pub compression: LayerCompression,
    /// A failed export is a warning, not the build's failure.
    pub ignore_error: bool,
    /// The contents of the build's `RUN --mount=type=cache` travel with the cache.
    pub cache_mounts: bool,
}

/// Where a `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// A reference: a cache manifest, or an image with lb's records in its config.
    Registry(Reference),
    /// An OCI image layout directory an export of `type=local` wrote.
    Local(PathBuf),
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    pub source: ImportSource,
}

impl CacheImport {
    /// How a hit names it: `CACHED (NAME)`.
    pub fn name(&self) -> String {
        match &self.source {
            ImportSource::Registry(r) => r.familiar(),
            ImportSource::Local(d) => d.display().to_string(),
        }
    }
}

/// `key=value` pairs of a flag's value; a value with no `=` is the reference.
fn pairs(flag: &'static str, value: &str) -> Result<Vec<(String, String)>, Error> {
    if !value.contains('=') {
        return Ok(vec![
            ("type".into(), "registry".into()),
            ("ref".into(), value.to_string()),
        ]);
    }
    value
        .split(',')
        .map(|field| match field.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(spec_err(flag, value, format!("{field:?} is not KEY=VALUE"))),
        })
        .collect()
}

fn spec_err(flag: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Spec {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn boolean(flag: &'static str, value: &str, key: &str, v: &str) -> Result<bool, Error> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(spec_err(
            flag,
            value,
            format!("{key}={v}: want true or false"),
        )),
    }
}

fn reference(flag: &'static str, value: &str, r: &str) -> Result<Reference, Error> {
    Reference::parse(r).map_err(|e| spec_err(flag, value, format!("ref={r}: {e}")))
}

impl FromStr for CacheExport {
    type Err = Error;

    fn from_str(value: &str) -> Result<CacheExport, Error> {
        const FLAG: &str = "--cache-to";
        let mut kind = None;
        let (mut reference, mut dest) = (None, None);
        let mut export = CacheExport {
            target: ExportTarget::Inline,
            mode: CacheMode::Min,
            image_manifest: true,
            compression: LayerCompression::Gzip(6),
            ignore_error: false,
            cache_mounts: false,
        };
        for (k, v) in pairs(FLAG, value)? {
            match k.as_str() {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "dest" => dest = Some(v),
                "mode" => {
                    export.mode = match v.as_str() {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => {
                            return Err(spec_err(
                                FLAG,
                                value,
                                format!("mode={v}: want min or max"),
                            ));
                        }
                    }
                }
                "image-manifest" => export.image_manifest = boolean(FLAG, value, &k, &v)?,
                "oci-mediatypes" => {
                    if !boolean(FLAG, value, &k, &v)? {
                        return Err(spec_err(
                            FLAG,
                            value,
                            "oci-mediatypes=false: lb writes OCI media types only",
                        ));
                    }
                }
                "compression" => {
                    export.compression = match v.as_str() {
                        "gzip" => LayerCompression::Gzip(6),
                        "zstd" => LayerCompression::Zstd(3),
                        _ => {
                            return Err(spec_err(
                                FLAG,
                                value,
                                format!("compression={v}: want gzip or zstd"),
                            ));
                        }
                    }
                }
                "ignore-error" => export.ignore_error = boolean(FLAG, value, &k, &v)?,
                "cache-mounts" => export.cache_mounts = boolean(FLAG, value, &k, &v)?,
                _ => return Err(spec_err(FLAG, value, format!("unknown key {k:?}"))),
            }
        }
        export.target = match kind.as_deref() {
            Some("registry") => match reference {
                Some(r) => ExportTarget::Registry(self::reference(FLAG, value, &r)?),
                None => return Err(spec_err(FLAG, value, "type=registry needs ref=REF")),
            },
            Some("local") => match dest {
                Some(d) if !d.is_empty() => ExportTarget::Local(PathBuf::from(d)),
                _ => return Err(spec_err(FLAG, value, "type=local needs dest=DIR")),
            },
            Some("inline") => ExportTarget::Inline,
            Some(t) => {
                return Err(spec_err(
                    FLAG,
                    value,
                    format!("type={t}: want registry, local or inline"),
                ));
            }
            None => return Err(spec_err(FLAG, value, "no type=")),
        };
        Ok(export)
    }
}

impl FromStr for CacheImport {
    type Err = Error;

    fn from_str(value: &str) -> Result<CacheImport, Error> {
        const FLAG: &str = "--cache-from";
        let (mut kind, mut reference, mut src) = (None, None, None);
        for (k, v) in pairs(FLAG, value)? {
            match k.as_str() {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "src" => src = Some(v),
                _ => return Err(spec_err(FLAG, value, format!("unknown key {k:?}"))),
            }
        }
        let source = match kind.as_deref() {
            Some("registry") => match reference {
                Some(r) => ImportSource::Registry(self::reference(FLAG, value, &r)?),
                None => return Err(spec_err(FLAG, value, "type=registry needs ref=REF")),
            },
            Some("local") => match src {
                Some(d) if !d.is_empty() => ImportSource::Local(PathBuf::from(d)),
                _ => return Err(spec_err(FLAG, value, "type=local needs src=DIR")),
            },
            Some(t) => {
                return Err(spec_err(
                    FLAG,
                    value,
                    format!("type={t}: want registry or local"),
                ));
            }
            None => return Err(spec_err(FLAG, value, "no type=")),
        };
        Ok(CacheImport { source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_values_parse_and_bad_ones_name_what_is_wrong() {
        let e: CacheExport = "type=registry,ref=localhost:5000/app:cache,mode=max,compression=zstd,ignore-error=true,cache-mounts=true,image-manifest=false"
            .parse()
            .unwrap();
        assert_eq!(
            e.target,
            ExportTarget::Registry(Reference::parse("localhost:5000/app:cache").unwrap())
        );
        assert_eq!(e.mode, CacheMode::Max);
        assert_eq!(e.compression, LayerCompression::Zstd(3));
        assert!(e.ignore_error && e.cache_mounts && !e.image_manifest);
        let e: CacheExport = "type=local,dest=/tmp/c".parse().unwrap();
        assert_eq!(e.target, ExportTarget::Local("/tmp/c".into()));
        assert_eq!(e.mode, CacheMode::Min);
        assert!(e.image_manifest);
        let e: CacheExport = "type=inline".parse().unwrap();
        assert_eq!(e.target, ExportTarget::Inline);
        let bare: CacheExport = "localhost:5000/app:cache".parse().unwrap();
        assert!(matches!(bare.target, ExportTarget::Registry(_)));

        let i: CacheImport = "localhost:5000/app:1".parse().unwrap();
        assert_eq!(i.name(), "localhost:5000/app:1");
        let i: CacheImport = "type=local,src=/c".parse().unwrap();
        assert_eq!(i.source, ImportSource::Local("/c".into()));

        for (bad, says) in [
            ("type=registry", "needs ref=REF"),
            ("type=local", "needs dest=DIR"),
            ("type=s3,ref=x", "type=s3"),
            ("type=registry,ref=a,mode=all", "mode=all"),
            ("type=registry,ref=a,colour=red", "unknown key \"colour\""),
            (
                "type=registry,ref=a,ignore-error=maybe",
                "want true or false",
            ),
            ("type=registry,ref=x/UPPER", "ref=x/UPPER"),
        ] {
            let e = bad.parse::<CacheExport>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.starts_with("--cache-to"), "{e}");
        }
        let e = "type=local".parse::<CacheImport>().unwrap_err().to_string();
        assert!(e.contains("needs src=DIR"), "{e}");
    }
}
