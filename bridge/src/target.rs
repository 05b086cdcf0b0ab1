//! Relay targets (`HOST:PORT`) and the allow-list that decides which of them the bridge dials.
//!
//! Matching is textual after normalisation (host names lower-cased, IP addresses in their
//! canonical form, IPv6 in brackets); no DNS lookup happens before a target is found on the
//! list, so a browser can never make the bridge resolve or dial a name that is not listed.
//! `localhost:30303` on the list therefore does not admit `127.0.0.1:30303`: list the exact
//! form the browser will ask for.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The longest host name DNS allows (RFC 1035, in its dotted text form).
const MAX_HOST_NAME_LEN: usize = 253;
/// The longest label (dot-separated part) of a host name (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A `HOST:PORT` the bridge may connect to: an IPv4 address, a bracketed IPv6 address or a
/// DNS name, and a non-zero port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    /// Lower-cased, validated DNS name.
    Name(String),
}

/// Why a `HOST:PORT` string is not a valid target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `:PORT` after the host.
    #[error("missing :PORT after the host")]
    MissingPort,
    /// The port is not a decimal number in 1..=65535.
    #[error("port {0:?} is not a number in 1..=65535")]
    BadPort(String),
    /// The host part is empty.
    #[error("empty host")]
    EmptyHost,
    /// An IPv6 address written without brackets (`::1:30303` is ambiguous).
    #[error("IPv6 addresses must be written in brackets, as in [::1]:30303")]
    UnbracketedIpv6,
    /// Something in brackets that is not an IPv6 address.
    #[error("{0:?} is not an IPv6 address")]
    BadIpv6(String),
    /// A host name with characters or a shape DNS does not allow.
    #[error("{0:?} is not a valid host name")]
    BadHostName(String),
}

impl Target {
    /// A target at an IP address.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self { host: Host::Ip(addr.ip().to_canonical()), port: addr.port() }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens a TCP connection to the target (resolving the name, for a DNS target).
    pub async fn connect(&self) -> io::Result<tokio::net::TcpStream> {
        match &self.host {
            Host::Ip(ip) => tokio::net::TcpStream::connect(SocketAddr::new(*ip, self.port)).await,
            Host::Name(name) => tokio::net::TcpStream::connect((name.as_str(), self.port)).await,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = text.rsplit_once(':').ok_or(TargetError::MissingPort)?;
        let port = parse_port(port)?;
        let host = if let Some(bracketed) = host.strip_prefix('[') {
            let inner =
                bracketed.strip_suffix(']').ok_or_else(|| TargetError::BadIpv6(host.into()))?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| TargetError::BadIpv6(inner.into()))?;
            Host::Ip(IpAddr::V6(ip).to_canonical())
        } else if host.is_empty() {
            return Err(TargetError::EmptyHost);
        } else if host.contains(':') {
            return Err(TargetError::UnbracketedIpv6);
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else {
            Host::Name(parse_host_name(host)?)
        };
        Ok(Self { host, port })
    }
}

/// Strict: decimal digits only (no sign, no spaces), non-zero, at most 65535.
fn parse_port(text: &str) -> Result<u16, TargetError> {
    let bad = || TargetError::BadPort(text.into());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// Letters, digits, `-` and `_` in non-empty labels of at most 63 bytes, no leading or
/// trailing `-`; the whole at most 253 bytes. Returned lower-cased.
fn parse_host_name(text: &str) -> Result<String, TargetError> {
    let bad = || TargetError::BadHostName(text.into());
    if text.len() > MAX_HOST_NAME_LEN {
        return Err(bad());
    }
    for label in text.split('.') {
        let shaped = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !shaped {
            return Err(bad());
        }
    }
    Ok(text.to_ascii_lowercase())
}

/// The set of targets the bridge will dial. Anything else is refused before any connection
/// or name lookup is attempted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    targets: HashSet<Target>,
}

/// Why an allow-list file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file could not be read.
    #[error("cannot read allow-list file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is not a valid `HOST:PORT`.
    #[error("allow-list {path}, line {line}: {entry:?}: {source}")]
    Entry {
        /// The file (or `-` for text given directly).
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The line's entry, trimmed.
        entry: String,
        /// What is wrong with it.
        source: TargetError,
    },
}

impl AllowList {
    /// An empty list (it refuses everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a target; returns false if it was already listed.
    pub fn insert(&mut self, target: Target) -> bool {
        self.targets.insert(target)
    }

    /// Whether the bridge may dial `target`.
    pub fn contains(&self, target: &Target) -> bool {
        self.targets.contains(target)
    }

    /// The number of listed targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The listed targets, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter()
    }

    /// Adds every entry of an allow-list text: one `HOST:PORT` per line; blank lines and
    /// everything from `#` to the end of a line are ignored. `path` only names the source
    /// in errors.
    pub fn extend_from_text(&mut self, text: &str, path: &Path) -> Result<(), AllowListError> {
        for (index, line) in text.lines().enumerate() {
            let entry = line.split_once('#').map_or(line, |(before, _)| before).trim();
            if entry.is_empty() {
                continue;
            }
            let target = entry.parse().map_err(|source| AllowListError::Entry {
                path: path.to_path_buf(),
                line: index.saturating_add(1),
                entry: entry.into(),
                source,
            })?;
            self.insert(target);
        }
        Ok(())
    }

    /// Adds every entry of an allow-list file (format of [`AllowList::extend_from_text`]).
    pub fn extend_from_file(&mut self, path: &Path) -> Result<(), AllowListError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AllowListError::Read { path: path.to_path_buf(), source })?;
        self.extend_from_text(&text, path)
    }
}

impl FromIterator<Target> for AllowList {
    fn from_iter<I: IntoIterator<Item = Target>>(iter: I) -> Self {
        Self { targets: iter.into_iter().collect() }
    }
}

impl Extend<Target> for AllowList {
    fn extend<I: IntoIterator<Item = Target>>(&mut self, iter: I) {
        self.targets.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Target, TargetError> {
        text.parse()
    }

    #[test]
    fn parses_and_normalises_the_three_host_forms() {
        assert_eq!(parse("127.0.0.1:30303").map(|t| t.to_string()), Ok("127.0.0.1:30303".into()));
        assert_eq!(
            parse("[0:0:0:0:0:0:0:1]:30303").map(|t| t.to_string()),
            Ok("[::1]:30303".into())
        );
        assert_eq!(
            parse("LES.Example.ORG:1").map(|t| t.to_string()),
            Ok("les.example.org:1".into())
        );
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        assert_eq!(parse("[::ffff:10.0.0.1]:7"), parse("10.0.0.1:7"));
    }

    #[test]
    fn rejects_malformed_targets() {
        assert_eq!(parse("127.0.0.1"), Err(TargetError::MissingPort));
        assert_eq!(parse(":30303"), Err(TargetError::EmptyHost));
        assert_eq!(parse("::1:30303"), Err(TargetError::UnbracketedIpv6));
        assert_eq!(parse("[::1:30303"), Err(TargetError::BadIpv6("[::1".into())));
        assert_eq!(parse("[nope]:1"), Err(TargetError::BadIpv6("nope".into())));
        for port in ["0", "65536", "+80", " 80", "", "8o"] {
            assert_eq!(parse(&format!("a:{port}")), Err(TargetError::BadPort(port.into())));
        }
        for host in ["a..b", "-a", "a-", "a/b", "a b", "ä", &"x".repeat(64)] {
            assert_eq!(
                parse(&format!("{host}:1")),
                Err(TargetError::BadHostName(host.to_string())),
                "{host}"
            );
        }
    }

    #[test]
    fn allow_list_text_skips_comments_and_reports_the_bad_line() {
        let mut list = AllowList::new();
        let text = "# servers\n127.0.0.1:30303  # first\n\n  [::1]:30304\n";
        list.extend_from_text(text, Path::new("list")).map_err(|e| e.to_string()).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&parse("127.0.0.1:30303").unwrap()));
        assert!(list.contains(&parse("[::1]:30304").unwrap()));
        assert!(!list.contains(&parse("127.0.0.1:30304").unwrap()));

        let error = AllowList::new().extend_from_text("a:1\nb:0\n", Path::new("f")).unwrap_err();
        assert!(
            matches!(error, AllowListError::Entry { line: 2, ref entry, .. } if entry == "b:0"),
            "{error}"
        );
    }
}
