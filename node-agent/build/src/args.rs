//! Build args: the values `--build-arg` gives, the ARGs before the first FROM, the
//! platform args BuildKit predefines, and which given args the Dockerfile used. Pure.

use std::collections::{BTreeMap, BTreeSet};

use berth_dockerfile::ArgDecl;

/// Build args every Dockerfile may use without declaring them; like Docker, they are
/// passed to RUN but left out of the cache key and the image.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Clone, Debug)]
pub struct BuildArgs {
    /// From the command line.
    given: BTreeMap<String, String>,
    /// The given args some ARG declared.
    used: BTreeSet<String>,
    /// The platform args BuildKit predefines, with this host's values.
    platform: BTreeMap<&'static str, String>,
    /// The ARGs before the first FROM, with their values.
    meta: BTreeMap<String, Option<String>>,
}

impl BuildArgs {
    pub fn new(given: BTreeMap<String, String>, platform: BTreeMap<&'static str, String>) -> Self {
        BuildArgs {
            given,
            used: BTreeSet::new(),
            platform,
            meta: BTreeMap::new(),
        }
    }

    /// The platform this host builds for (`linux/amd64`).
    pub fn target_platform(&self) -> &str {
        self.platform
            .get("TARGETPLATFORM")
            .map_or("", String::as_str)
    }

    /// The value of build arg `name`: given on the command line, else `default`, else a
    /// platform arg's.
    fn value(&mut self, name: &str, default: Option<String>) -> Option<String> {
        if let Some(value) = self.given.get(name) {
            self.used.insert(name.to_string());
            return Some(value.clone());
        }
        default.or_else(|| self.platform.get(name).cloned())
    }

    /// An ARG before the first FROM.
    pub fn declare_meta(&mut self, decl: ArgDecl) {
        let value = self.value(&decl.name, decl.default);
        self.meta.insert(decl.name, value);
    }

    /// A variable as a FROM line (or a `--from`) sees it: a meta ARG or a platform arg.
    pub fn meta_var(&self, name: &str) -> Option<String> {
        self.meta
            .get(name)
            .cloned()
            .flatten()
            .or_else(|| self.platform.get(name).cloned())
    }

    /// The value an ARG inside a stage gets: given, else its default, else the value
    /// of the meta ARG of the same name.
    pub fn stage_value(&mut self, decl: &ArgDecl) -> Option<String> {
        let inherited = self.meta.get(&decl.name).cloned().flatten();
        self.value(&decl.name, decl.default.clone().or(inherited))
    }

    /// The given args no ARG declared (the proxy args need no ARG).
    pub fn unused(&self) -> Vec<&str> {
        self.given
            .keys()
            .filter(|k| !self.used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The proxy args given, as `NAME=value` for a RUN step's environment.
    pub fn proxy_env(&self) -> Vec<String> {
        PROXY_ARGS
            .iter()
            .filter_map(|p| self.given.get(*p).map(|v| format!("{p}={v}")))
            .collect()
    }
}

/// Values of the platform args BuildKit predefines, for this host.
pub fn platform_args() -> BTreeMap<&'static str, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let platform = format!("linux/{arch}");
    BTreeMap::from([
        ("TARGETPLATFORM", platform.clone()),
        ("TARGETOS", "linux".into()),
        ("TARGETARCH", arch.into()),
        ("TARGETVARIANT", String::new()),
        ("BUILDPLATFORM", platform),
        ("BUILDOS", "linux".into()),
        ("BUILDARCH", arch.into()),
        ("BUILDVARIANT", String::new()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, default: Option<&str>) -> ArgDecl {
        ArgDecl {
            name: name.into(),
            default: default.map(str::to_string),
        }
    }

    fn args(given: &[(&str, &str)]) -> BuildArgs {
        let given = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BuildArgs::new(given, platform_args())
    }

    #[test]
    fn given_beats_default_beats_meta_beats_platform() {
        let mut a = args(&[("V", "given")]);
        a.declare_meta(decl("V", Some("meta")));
        a.declare_meta(decl("M", Some("meta")));
        a.declare_meta(decl("UNSET", None));
        assert_eq!(a.meta_var("V").as_deref(), Some("given"));
        assert_eq!(a.meta_var("M").as_deref(), Some("meta"));
        assert_eq!(a.meta_var("UNSET"), None);
        assert_eq!(a.meta_var("TARGETOS").as_deref(), Some("linux"));
        assert_eq!(
            a.stage_value(&decl("V", Some("d"))).as_deref(),
            Some("given")
        );
        assert_eq!(a.stage_value(&decl("M", Some("d"))).as_deref(), Some("d"));
        assert_eq!(a.stage_value(&decl("M", None)).as_deref(), Some("meta"));
        assert_eq!(a.stage_value(&decl("OTHER", None)), None);
        assert_eq!(
            a.stage_value(&decl("TARGETARCH", None)),
            a.meta_var("TARGETARCH")
        );
        assert_eq!(
            a.target_platform(),
            format!("linux/{}", a.meta_var("TARGETARCH").unwrap())
        );
    }

    #[test]
    fn unused_leaves_out_declared_and_proxy_args() {
        let mut a = args(&[("USED", "1"), ("UNUSED", "2"), ("http_proxy", "p")]);
        assert_eq!(a.unused(), ["UNUSED", "USED"]);
        a.stage_value(&decl("USED", None));
        assert_eq!(a.unused(), ["UNUSED"]);
        assert_eq!(a.proxy_env(), ["http_proxy=p"]);
    }
}
