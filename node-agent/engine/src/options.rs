//! Parsing `docker run`-style option values: pure functions with Docker's syntax and
//! error messages that name the bad value.

use std::path::PathBuf;

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::container::RestartPolicy;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid environment variable \"{0}\": the name must not be empty")]
    Env(String),
    #[error(
        "invalid volume \"{0}\": expected NAME:/path, /host/path:/path, with :ro or :rw optionally"
    )]
    Volume(String),
    #[error("invalid volume \"{value}\": {reason}")]
    VolumePart { value: String, reason: String },
    #[error(
        "invalid size \"{0}\": expected a number with an optional unit b, k, m or g (e.g. 64m)"
    )]
    Size(String),
    #[error("invalid --cpus \"{value}\": expected a number between 0.01 and {max}")]
    Cpus { value: String, max: String },
    #[error("invalid --restart \"{0}\": expected no, on-failure[:N], always or unless-stopped")]
    Restart(String),
    #[error("invalid --ulimit \"{0}\": expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")]
    Ulimit(String),
    #[error("invalid signal \"{0}\": give a name (TERM, SIGHUP) or a number")]
    Signal(String),
    #[error("invalid --log-opt \"{0}\": supported are max-size=SIZE and max-file=N")]
    LogOpt(String),
}

/// `-e KEY=VALUE`, or `-e KEY` to pass the variable on from this environment (dropped
/// when unset there, as in Docker).
pub fn parse_env(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, Error> {
    match value.split_once('=') {
        Some(("", _)) => Err(Error::Env(value.to_string())),
        Some(_) => Ok(Some(value.to_string())),
        None if value.is_empty() => Err(Error::Env(value.to_string())),
        None => Ok(lookup(value).map(|v| format!("{value}={v}"))),
    }
}

/// The lines of an `--env-file`: `KEY=VALUE` or `KEY`, `#` comments and blank lines.
pub fn parse_env_file(
    content: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for line in content.lines().map(str::trim_start) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.extend(parse_env(line, &lookup)?);
    }
    Ok(out)
}

/// What `-v` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    Named(String),
    Host(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub source: VolumeSource,
    pub destination: String,
    pub read_only: bool,
}

/// `-v NAME:/dest[:ro|rw]` or `-v /host:/dest[:ro|rw]`.
pub fn parse_volume(value: &str) -> Result<VolumeSpec, Error> {
    let parts: Vec<&str> = value.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, None),
        [s, d, m] => (*s, *d, Some(*m)),
        _ => return Err(Error::Volume(value.to_string())),
    };
    let part = |reason: &str| Error::VolumePart {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if src.is_empty() {
        return Err(part("the source is empty"));
    }
    if !dst.starts_with('/') {
        return Err(part("the destination must be an absolute path"));
    }
    if dst == "/" {
        return Err(part("the destination cannot be /"));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(part(&format!("unknown mode \"{other}\" (use ro or rw)"))),
    };
    let source = if src.starts_with('/') {
        VolumeSource::Host(PathBuf::from(src))
    } else {
        crate::volume::validate_name(src).map_err(|e| part(&e.to_string()))?;
        VolumeSource::Named(src.to_string())
    };
    Ok(VolumeSpec {
        source,
        destination: dst.to_string(),
        read_only,
    })
}

/// `64m`, `1g`, `512k`, `1048576` (bytes).
pub fn parse_size(value: &str) -> Result<i64, Error> {
    let v = value.trim().to_ascii_lowercase();
    let v = v
        .strip_suffix('b')
        .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&v);
    let (num, mult) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1i64 << 10),
        Some('m') => (&v[..v.len() - 1], 1 << 20),
        Some('g') => (&v[..v.len() - 1], 1 << 30),
        Some('b') => (&v[..v.len() - 1], 1),
        _ => (v, 1),
    };
    let n: f64 = num.parse().map_err(|_| Error::Size(value.to_string()))?;
    if !n.is_finite() || n < 0.0 {
        return Err(Error::Size(value.to_string()));
    }
    let bytes = n * mult as f64;
    if bytes > i64::MAX as f64 {
        return Err(Error::Size(value.to_string()));
    }
    Ok(bytes as i64)
}

/// `--cpus 1.5`, bounded by the CPUs this host has.
pub fn parse_cpus(value: &str, host_cpus: usize) -> Result<f64, Error> {
    let err = || Error::Cpus {
        value: value.to_string(),
        max: format!("{host_cpus}.00"),
    };
    let n: f64 = value.parse().map_err(|_| err())?;
    if !(0.01..=host_cpus as f64).contains(&n) {
        return Err(err());
    }
    Ok(n)
}

pub fn parse_restart(value: &str) -> Result<RestartPolicy, Error> {
    let err = || Error::Restart(value.to_string());
    Ok(match value.split_once(':') {
        None if value == "no" || value.is_empty() => RestartPolicy::No,
        None if value == "always" => RestartPolicy::Always,
        None if value == "unless-stopped" => RestartPolicy::UnlessStopped,
        None if value == "on-failure" => RestartPolicy::OnFailure { max_retries: 0 },
        Some(("on-failure", n)) => RestartPolicy::OnFailure {
            max_retries: n.parse().map_err(|_| err())?,
        },
        _ => return Err(err()),
    })
}

/// `--ulimit nofile=1024:2048` (a single number sets both).
pub fn parse_ulimit(value: &str) -> Result<PosixRlimit, Error> {
    let err = || Error::Ulimit(value.to_string());
    let (name, limits) = value.split_once('=').ok_or_else(err)?;
    let typ = match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        _ => return Err(err()),
    };
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let parse = |s: &str| -> Result<u64, Error> {
        match s {
            "-1" | "unlimited" => Ok(u64::MAX),
            s => s.parse().map_err(|_| err()),
        }
    };
    let (soft, hard) = (parse(soft)?, parse(hard)?);
    if soft > hard {
        return Err(err());
    }
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|_| err())
}

/// A signal by name (`TERM`, `SIGTERM`, `sigterm`) or number.
pub fn parse_signal(value: &str) -> Result<nix::sys::signal::Signal, Error> {
    use std::str::FromStr;
    let err = || Error::Signal(value.to_string());
    if let Ok(n) = value.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| err());
    }
    let upper = value.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| err())
}

/// `--log-opt max-size=10m` / `max-file=3`.
pub fn apply_log_opt(opts: &mut crate::container::LogOptions, value: &str) -> Result<(), Error> {
    let err = || Error::LogOpt(value.to_string());
    match value.split_once('=') {
        Some(("max-size", v)) => opts.max_size = parse_size(v).map_err(|_| err())?.max(1) as u64,
        Some(("max-file", v)) => {
            opts.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(err)?
        }
        _ => return Err(err()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_and_passthrough() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(parse_env("A=1", lookup), Ok(Some("A=1".into())));
        assert_eq!(parse_env("A=", lookup), Ok(Some("A=".into())));
        assert_eq!(parse_env("A=b=c", lookup), Ok(Some("A=b=c".into())));
        assert_eq!(parse_env("HOME", lookup), Ok(Some("HOME=/root".into())));
        assert_eq!(parse_env("UNSET", lookup), Ok(None));
        assert_eq!(parse_env("=x", lookup), Err(Error::Env("=x".into())));
        assert_eq!(parse_env("", lookup), Err(Error::Env("".into())));
        let file = "# comment\n\nA=1\n  B=two words\nHOME\n";
        assert_eq!(
            parse_env_file(file, lookup).unwrap(),
            vec!["A=1", "B=two words", "HOME=/root"]
        );
    }

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("data:/data").unwrap(),
            VolumeSpec {
                source: VolumeSource::Named("data".into()),
                destination: "/data".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse_volume("/srv/x:/x:ro").unwrap(),
            VolumeSpec {
                source: VolumeSource::Host("/srv/x".into()),
                destination: "/x".into(),
                read_only: true
            }
        );
        assert!(!parse_volume("/a:/b:rw").unwrap().read_only);
        for bad in [
            "data",
            "data:rel",
            ":/x",
            "/a:/b:rx",
            "a:/b:ro:extra",
            "bad name:/x",
            "/a:/",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert!(
            parse_volume("/a:/b:rx")
                .unwrap_err()
                .to_string()
                .contains("unknown mode \"rx\"")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        for bad in ["", "m", "-1m", "12x", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1.5", 2), Ok(1.5));
        assert!(
            parse_cpus("3", 2)
                .unwrap_err()
                .to_string()
                .contains("between 0.01 and 2.00")
        );
        assert!(parse_cpus("0", 2).is_err());
        assert!(parse_cpus("x", 2).is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("no"), Ok(RestartPolicy::No));
        assert_eq!(parse_restart("always"), Ok(RestartPolicy::Always));
        assert_eq!(
            parse_restart("unless-stopped"),
            Ok(RestartPolicy::UnlessStopped)
        );
        assert_eq!(
            parse_restart("on-failure"),
            Ok(RestartPolicy::OnFailure { max_retries: 0 })
        );
        assert_eq!(
            parse_restart("on-failure:2"),
            Ok(RestartPolicy::OnFailure { max_retries: 2 })
        );
        for bad in ["sometimes", "on-failure:x", "always:3"] {
            assert!(parse_restart(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ulimits() {
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (PosixRlimitType::RlimitNofile, 1024, 2048)
        );
        let r = parse_ulimit("core=0").unwrap();
        assert_eq!((r.soft(), r.hard()), (0, 0));
        assert_eq!(parse_ulimit("stack=-1").unwrap().hard(), u64::MAX);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=a"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sighup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn log_opts() {
        let mut o = crate::container::LogOptions::default();
        apply_log_opt(&mut o, "max-size=1k").unwrap();
        apply_log_opt(&mut o, "max-file=5").unwrap();
        assert_eq!((o.max_size, o.max_files), (1024, 5));
        assert!(apply_log_opt(&mut o, "max-file=0").is_err());
        assert!(apply_log_opt(&mut o, "compress=true").is_err());
    }
}
