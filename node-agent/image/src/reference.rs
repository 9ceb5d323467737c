//! Image references, `[host[:port]/]path[:tag][@digest]`, parsed and normalized exactly as
//! Docker's `distribution/reference` does (`ParseNormalizedNamed` followed by
//! `TagNameOnly`): `base` is `docker.io/library/base:latest`, the first path component is a
//! registry host iff it contains `.` or `:`, is `localhost`, or has an uppercase letter, and
//! repository paths are lowercase. [`Reference::familiar`] is the short form Docker shows.
//!
//! Written by hand from the grammar rather than with a regex crate or a registry client:
//! the grammar is small, and the errors can say which part is wrong.

use std::fmt;
use std::str::FromStr;

use crate::Error;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A normalized image reference. It always has a tag or a digest (or both): a reference
/// given with neither gets the tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes `s` (`base`, `me/app:v1`, `localhost:5000/a/b@sha256:...`).
    pub fn parse(s: &str) -> Result<Reference, Error> {
        parse(s).map_err(|reason| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        })
    }

    /// The registry host, with its port if it has one (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/base`, `me/app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The full repository name: `docker.io/library/base`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it: `base`, `me/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(official) if !official.contains('/') => official.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it: `base:latest`, `localhost:5000/a/b:v1`.
    pub fn familiar(&self) -> String {
        self.format(self.familiar_name())
    }

    fn format(&self, mut name: String) -> String {
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(digest);
        }
        name
    }
}

/// The full normalized form: `docker.io/library/base:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(self.name()))
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

/// Whether `s` is a 64-character lowercase hex string: an image id without its `sha256:`.
pub fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse(s: &str) -> Result<Reference, &'static str> {
    if s.is_empty() {
        return Err("repository name must have at least one component");
    }
    if is_full_hex_id(s) {
        return Err("cannot specify 64-byte hexadecimal strings as a name");
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (s, None),
    };
    // A tag follows the last `:` after the last `/`; any earlier `:` belongs to a port.
    let last_component = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_component..].find(':') {
        Some(i) => {
            let split = last_component + i;
            (&name_tag[..split], Some(&name_tag[split + 1..]))
        }
        None => (name_tag, None),
    };
    let (domain, path) = split_domain(name);

    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    if domain != DEFAULT_DOMAIN && !valid_domain(domain) {
        return Err("invalid registry host (letters, digits, '-' and '.', then an optional :port)");
    }
    if !path.split('/').all(valid_path_component) {
        return Err(
            "invalid repository path: each /-separated component must be lowercase letters and \
             digits, separated by '.', '_', '__' or dashes",
        );
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err("repository name must not be more than 255 characters");
    }
    if tag.is_some_and(|tag| !valid_tag(tag)) {
        return Err(
            "invalid tag: it must be 1 to 128 letters, digits, '_', '.' or '-', and not start \
             with '.' or '-'",
        );
    }
    if let Some(digest) = digest {
        validate_digest(digest)?;
    }
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        },
        digest: digest.map(str::to_string),
    })
}

/// `splitDockerDomain`: the registry host and the repository path, with Docker Hub's
/// defaults filled in.
fn split_domain(name: &str) -> (&str, String) {
    let (domain, remote) = match name.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"))
    } else {
        (domain, remote.to_string())
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(bracketed) => {
            let Some((ipv6, rest)) = bracketed.split_once(']') else {
                return false;
            };
            let port = match rest {
                "" => None,
                rest => match rest.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            let ipv6_ok =
                !ipv6.is_empty() && ipv6.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            (ipv6_ok, port)
        }
        None => match domain.split_once(':') {
            Some((host, port)) => (host.split('.').all(valid_domain_component), Some(port)),
            None => (domain.split('.').all(valid_domain_component), None),
        },
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = c.as_bytes();
    loop {
        let run = rest.iter().take_while(|&&b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let sep = rest.iter().take_while(|&&b| !alnum(b)).count();
        let valid_separator = match &rest[..sep] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|&b| b == b'-'),
        };
        if !valid_separator {
            return false;
        }
        rest = &rest[sep..];
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// The digest grammar of the reference (`algorithm:hex`), then what go-digest accepts:
/// a known algorithm with a lowercase hex value of the right length.
fn validate_digest(digest: &str) -> Result<(), &'static str> {
    const FORMAT: &str = "invalid digest: expected algorithm:hex, like sha256:<64 hex digits>";
    let (algorithm, hex) = digest.split_once(':').ok_or(FORMAT)?;
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FORMAT);
    }
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm (sha256, sha384 and sha512 are)"),
    };
    if hex.len() != expected_len {
        return Err("invalid checksum digest length");
    }
    if !is_lower_hex(hex) {
        return Err("invalid checksum digest format: hex digits must be lowercase");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    fn reason(s: &str) -> &'static str {
        match parse(s) {
            Err(reason) => reason,
            Ok(r) => panic!("{s} parsed as {r}, expected an error"),
        }
    }

    #[test]
    fn normalizes_like_docker() {
        let d = format!("sha256:{HEX}");
        let cases: &[(&str, String)] = &[
            ("busybox", "docker.io/library/busybox:latest".into()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("library/busybox", "docker.io/library/busybox:latest".into()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
            ),
            ("index.docker.io/me/app", "docker.io/me/app:latest".into()),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest".into(),
            ),
            ("me/app", "docker.io/me/app:latest".into()),
            ("me/app/sub/deep:v2", "docker.io/me/app/sub/deep:v2".into()),
            ("localhost/foo", "localhost/foo:latest".into()),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t".into()),
            // Without a slash, `localhost:5000` is the image `localhost` with tag 5000.
            ("localhost:5000", "docker.io/library/localhost:5000".into()),
            ("localhost", "docker.io/library/localhost:latest".into()),
            ("example.com/foo", "example.com/foo:latest".into()),
            (
                "example.com:8080/foo/bar",
                "example.com:8080/foo/bar:latest".into(),
            ),
            ("Example.COM/foo", "Example.COM/foo:latest".into()),
            ("Registry/foo", "Registry/foo:latest".into()),
            ("my-registry/foo", "docker.io/my-registry/foo:latest".into()),
            ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo:latest".into()),
            ("[::1]:5000/foo:t", "[::1]:5000/foo:t".into()),
            ("[2001:db8::1]/foo", "[2001:db8::1]/foo:latest".into()),
            ("a.b-c.d/e", "a.b-c.d/e:latest".into()),
            (
                "foo_bar.baz__qux-x--y",
                "docker.io/library/foo_bar.baz__qux-x--y:latest".into(),
            ),
            ("foo:_tag", "docker.io/library/foo:_tag".into()),
            ("foo:V1.0-rc_1", "docker.io/library/foo:V1.0-rc_1".into()),
            (&format!("foo@{d}"), format!("docker.io/library/foo@{d}")),
            (
                &format!("foo:v1@{d}"),
                format!("docker.io/library/foo:v1@{d}"),
            ),
            (
                &format!("localhost:5000/foo@{d}"),
                format!("localhost:5000/foo@{d}"),
            ),
            // Partial hex is a name, only 64 hex digits are refused.
            (
                &HEX[..12],
                format!("docker.io/library/{}:latest", &HEX[..12]),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&full(input), want, "parsing {input}");
        }
    }

    #[test]
    fn familiar_forms() {
        let cases = [
            ("busybox", "busybox:latest", "busybox"),
            ("docker.io/library/busybox:1", "busybox:1", "busybox"),
            ("me/app:v1", "me/app:v1", "me/app"),
            ("docker.io/library/a/b", "library/a/b:latest", "library/a/b"),
            (
                "localhost:5000/me/app:v1",
                "localhost:5000/me/app:v1",
                "localhost:5000/me/app",
            ),
            ("localhost/app", "localhost/app:latest", "localhost/app"),
            ("quay.io/x/y:z", "quay.io/x/y:z", "quay.io/x/y"),
        ];
        for (input, familiar, name) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(r.familiar_name(), name, "{input}");
        }
        let d = format!("sha256:{HEX}");
        let r = Reference::parse(&format!("foo@{d}")).unwrap();
        assert_eq!(r.familiar(), format!("foo@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
    }

    #[test]
    fn accessors() {
        let r = Reference::parse("localhost:5000/a/b:t").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.name(), "localhost:5000/a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(
            "busybox".parse::<Reference>().unwrap().tag(),
            Some("latest")
        );
    }

    #[test]
    fn rejects_invalid_references() {
        let long_tag = "t".repeat(129);
        let long_name = format!("a/{}", "b".repeat(250));
        let cases: &[(&str, &str)] = &[
            ("", "at least one component"),
            (HEX, "64-byte hexadecimal"),
            ("Foo", "must be lowercase"),
            ("foo/Bar", "must be lowercase"),
            ("docker.io/Foo:tag", "must be lowercase"),
            ("localhost/Foo", "must be lowercase"),
            ("foo:", "invalid tag"),
            ("foo:.x", "invalid tag"),
            ("foo:-x", "invalid tag"),
            ("foo:a/b", "invalid registry host"),
            (&format!("foo:{long_tag}"), "invalid tag"),
            ("foo:bar:baz", "invalid tag"),
            ("foo:bar/baz", "invalid registry host"),
            ("example.com:/foo", "invalid registry host"),
            ("exa_mple.com/foo", "invalid registry host"),
            ("-example.com/foo", "invalid registry host"),
            ("[::1/foo", "invalid registry host"),
            ("[::1]x/foo", "invalid registry host"),
            ("[]/foo", "invalid repository path"),
            ("[]:5/foo", "invalid registry host"),
            ("foo..bar", "invalid repository path"),
            ("foo___bar", "invalid repository path"),
            ("foo._bar", "invalid repository path"),
            ("_foo", "invalid repository path"),
            ("foo-", "invalid repository path"),
            ("foo.", "invalid repository path"),
            ("foo//bar", "invalid repository path"),
            ("foo/", "invalid repository path"),
            ("/foo", "invalid repository path"),
            ("foo bar", "invalid repository path"),
            ("foo/-bar", "invalid repository path"),
            ("fööbar", "invalid repository path"),
            ("example.com/", "invalid repository path"),
            ("@sha256:x", "invalid repository path"),
            (&long_name, "not be more than 255"),
            ("foo@sha256", "invalid digest"),
            ("foo@sha256:abc", "invalid digest"),
            ("foo@256:0123456789abcdef0123456789abcdef", "invalid digest"),
            (
                "foo@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            (
                "foo@sha256:0123456789abcdef0123456789abcdef",
                "digest length",
            ),
            (
                &format!("foo@sha256:{}", HEX.to_uppercase()),
                "must be lowercase",
            ),
            (&format!("foo@sha256:{HEX}@sha256:{HEX}"), "invalid digest"),
        ];
        for (input, want) in cases {
            let got = reason(input);
            assert!(got.contains(want), "{input:?}: got {got:?}, want {want:?}");
        }
        let max_name = format!("a/{}", "b".repeat(255 - "docker.io/a/".len()));
        assert!(parse(&max_name).is_ok(), "255 characters are allowed");
        assert!(parse(&format!("foo:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn error_message_names_the_input() {
        let e = Reference::parse("Foo").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid reference \"Foo\": repository name must be lowercase"
        );
    }

    proptest! {
        #[test]
        fn valid_references_round_trip(
            s in "([a-z0-9]{1,4}\\.[a-z]{2,3}(:[0-9]{2,5})?/)?[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?\
                  (/[a-z0-9]{1,6}){0,2}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,8})?"
        ) {
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(&Reference::parse(&r.to_string()).unwrap(), &r);
            prop_assert_eq!(&Reference::parse(&r.familiar()).unwrap(), &r);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }
    }
}
