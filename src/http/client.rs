//! Who is on the other end: the client's IP address and whether it reached us over https,
//! taking `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` into account only when the
//! socket peer is one of the configured trusted proxies. Anything else could be forged by
//! the client to dodge rate limits or the admin network list. Sessions and audit entries record
//! the result.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

use crate::config::{ForwardedHeader, NetList};

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Where a request came from, resolved once per request by the guard layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// The client used https: to us directly (TLS), or to a trusted proxy that said so.
    pub https: bool,
    /// False when a trusted proxy forwarded for a hop it could not name (`unknown`, an
    /// obfuscated id, garbage): `ip` is then that proxy's, and vouches for nothing.
    pub placed: bool,
}

/// Resolves the client behind `peer`. Reads only the header the trusted proxies write
/// (`header`): a proxy that appends to `X-Forwarded-For` passes a client's own `Forwarded`
/// through untouched, so believing both would let the client pick its address. Walks the
/// chain from the nearest hop outwards and stops at the first address that is not a trusted
/// proxy: that is the client. Entries further left were written by whoever sent the request.
pub fn resolve(
    peer: IpAddr,
    tls: bool,
    headers: &HeaderMap,
    trusted: &NetList,
    header: ForwardedHeader,
) -> ClientAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return ClientAddr {
            ip: peer,
            https: tls,
            placed: true,
        };
    }
    let hops = forwarded_hops(headers, header);
    let mut ip = peer;
    let mut placed = true;
    for hop in hops.iter().rev() {
        match hop.for_ip {
            Some(next) => {
                ip = next;
                if !trusted.contains(next) {
                    break;
                }
            }
            None => {
                placed = false;
                break;
            }
        }
    }
    // The scheme is what the nearest proxy saw.
    let https = tls
        || match header {
            ForwardedHeader::Forwarded => hops
                .last()
                .and_then(|h| h.proto.as_deref())
                .is_some_and(|p| p.eq_ignore_ascii_case("https")),
            ForwardedHeader::XForwardedFor => last_value(headers, &X_FORWARDED_PROTO)
                .is_some_and(|p| p.eq_ignore_ascii_case("https")),
        };
    ClientAddr { ip, https, placed }
}

/// One hop of a forwarding chain.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hop {
    for_ip: Option<IpAddr>,
    proto: Option<String>,
}

/// The hops of `Forwarded` (RFC 7239) or of `X-Forwarded-For`, in order from the original
/// client to the nearest proxy. Several header lines form one list.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Hop> {
    let mut hops = Vec::new();
    if header == ForwardedHeader::Forwarded {
        for value in headers.get_all(&FORWARDED) {
            let Ok(text) = value.to_str() else {
                hops.push(Hop::default());
                continue;
            };
            for element in split_outside_quotes(text, ',') {
                let mut hop = Hop::default();
                for pair in split_outside_quotes(element, ';') {
                    let Some((name, value)) = pair.split_once('=') else {
                        continue;
                    };
                    let value = value.trim().trim_matches('"');
                    match name.trim().to_ascii_lowercase().as_str() {
                        "for" => hop.for_ip = parse_node(value),
                        "proto" => hop.proto = Some(value.to_string()),
                        _ => {}
                    }
                }
                hops.push(hop);
            }
        }
    } else {
        for value in headers.get_all(&X_FORWARDED_FOR) {
            let Ok(text) = value.to_str() else {
                hops.push(Hop::default());
                continue;
            };
            for item in text.split(',') {
                hops.push(Hop {
                    for_ip: parse_node(item.trim()),
                    proto: None,
                });
            }
        }
    }
    hops
}

/// Splits on `sep` except inside double quotes (RFC 7230 quoted-string).
fn split_outside_quotes(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`, or a bare IPv6 address (X-Forwarded-For). `unknown` and obfuscated
/// identifiers (`_hidden`) are not addresses.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
}

/// The client's IP address: as resolved by the guard layer, or the socket peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The client IP of a request whose parts are at hand.
pub fn client_ip(parts: &Parts) -> IpAddr {
    if let Some(client) = parts.extensions.get::<ClientAddr>() {
        return client.ip;
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The `User-Agent` header, cut to a sane length and stripped of control characters.
#[derive(Debug, Clone)]
pub struct UserAgent(pub Option<String>);

const MAX_USER_AGENT: usize = 512;

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let ua = parts.headers.get(USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect::<String>()
        });
        Ok(UserAgent(ua.filter(|s| !s.is_empty())))
    }
}

/// Where a request comes from, as sessions and audit entries record it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let UserAgent(user_agent) = UserAgent::from_request_parts(parts, state).await?;
        Ok(ClientInfo {
            ip: ip.to_string(),
            user_agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(s: &str) -> NetList {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = resolve(ip("203.0.113.9"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("203.0.113.9"),
                https: false,
                placed: true
            }
        );
        let c = resolve(ip("10.0.0.1"), false, &h, &nets(""), XFF);
        assert_eq!(c.ip, ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_the_scheme() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("198.51.100.7"),
                https: true,
                placed: true
            }
        );
    }

    #[test]
    fn spoofed_entries_left_of_the_first_untrusted_hop_are_ignored() {
        // The client sent "X-Forwarded-For: 1.1.1.1"; our two proxies appended to it.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert_eq!(c.ip, ip("198.51.100.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The proxy appends to X-Forwarded-For and passes the client's own Forwarded through.
        let h = headers(&[
            ("forwarded", "for=10.1.2.3;proto=https"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(!c.https);
        // And the other way round.
        let h = headers(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), FWD);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(!c.https);
    }

    #[test]
    fn forwarded_handles_ipv6_ports_and_the_nearest_proto() {
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), FWD);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("2001:db8:cafe::17"),
                https: true,
                placed: true
            }
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), FWD).ip,
            ip("192.0.2.60")
        );
    }

    #[test]
    fn an_unknown_hop_leaves_the_client_unplaced() {
        let h = headers(&[("forwarded", "for=198.51.100.7, for=_hidden")]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), FWD);
        assert!(!c.placed);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        let c = resolve(ip("10.0.0.1"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert!(!c.placed);
        // A trusted host calling directly, with no forwarding header, is itself the client.
        let c = resolve(
            ip("10.0.0.1"),
            false,
            &HeaderMap::new(),
            &nets("10.0.0.0/8"),
            XFF,
        );
        assert!(c.placed && c.ip == ip("10.0.0.1"));
    }

    #[test]
    fn several_header_lines_form_one_chain_and_mapped_v4_is_plain_v4() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        let c = resolve(ip("::ffff:10.0.0.1"), false, &h, &nets("10.0.0.0/8"), XFF);
        assert_eq!(c.ip, ip("198.51.100.7"));
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let parts: Vec<_> = split_outside_quotes(r#"a="x,y";b=1, c=2"#, ',').collect();
        assert_eq!(parts, vec![r#"a="x,y";b=1"#, "c=2"]);
    }
}
