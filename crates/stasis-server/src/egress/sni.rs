//! The server name (SNI) of a TLS connection, read from the client's first flight
//! without consuming it: the proxy peeks the ClientHello, picks the rules by the name,
//! and then either splices every byte (peeked ones first) to the destination or hands
//! them to its TLS server.
//!
//! Only what the decision needs is parsed (RFC 8446 4.1.2, RFC 6066 3): handshake
//! records are gathered (a ClientHello may span several records) up to [`MAX_HELLO`]
//! bytes; anything else is `NotTls` or `Incomplete`, and the caller splices or drops.

/// Largest ClientHello read (post-quantum key shares make them a few KiB).
pub const MAX_HELLO: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Sni {
    /// The host name the client asked for (lower-cased, no trailing dot).
    Name(String),
    /// A complete ClientHello without a host name.
    None,
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello (or larger than [`MAX_HELLO`]).
    NotTls,
}

/// Reads `buf`, the bytes the client sent so far.
pub fn parse(buf: &[u8]) -> Sni {
    // Gather the handshake bytes of the first records.
    let mut hs = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + 5) else { return incomplete(buf) };
        if header[0] != 22 || header[1] != 3 {
            return Sni::NotTls;
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let Some(body) = buf.get(at + 5..at + 5 + len) else { return incomplete(buf) };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Sni::NotTls;
            }
            let want = 4 + (u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize);
            if want > MAX_HELLO {
                return Sni::NotTls;
            }
            if hs.len() >= want {
                return client_hello(&hs[4..want]).unwrap_or(Sni::NotTls);
            }
        }
    }
}

fn incomplete(buf: &[u8]) -> Sni {
    if buf.len() >= MAX_HELLO + 5 {
        Sni::NotTls
    } else {
        Sni::Incomplete
    }
}

/// A cursor over big-endian, length-prefixed fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        Some(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello(body: &[u8]) -> Option<Sni> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Some(Sni::None);
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
                return valid.then(|| Sni::Name(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
    }
    Some(Sni::None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The first flight of a real TLS client (rustls) asking for `name`.
    fn client_hello_bytes(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_a_real_client_sends_once_it_has_it_all() {
        let hello = client_hello_bytes("API.Example.com");
        assert_eq!(parse(&hello), Sni::Name("api.example.com".into()));
        for cut in [0, 1, 5, 40, hello.len() - 1] {
            assert_eq!(parse(&hello[..cut]), Sni::Incomplete, "{cut} bytes");
        }
        // Extra bytes after it (the client's next records) do not matter.
        let mut more = hello.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        assert_eq!(parse(&more), Sni::Name("api.example.com".into()));
    }

    #[test]
    fn a_hello_split_across_records_is_gathered() {
        let hello = client_hello_bytes("split.example.org");
        let body = &hello[5..];
        let (a, b) = body.split_at(body.len() / 2);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(parse(&split), Sni::Name("split.example.org".into()));
    }

    #[test]
    fn no_name_and_not_tls() {
        // rustls sends no SNI for an IP address.
        assert_eq!(parse(&client_hello_bytes("10.1.2.3")), Sni::None);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Sni::NotTls);
        assert_eq!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Sni::NotTls, "a handshake that is not a ClientHello");
        assert_eq!(parse(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), Sni::NotTls, "larger than MAX_HELLO");
        // Garbage inside a well-framed hello is refused, not a panic.
        let mut hello = client_hello_bytes("x.example.com");
        for b in hello.iter_mut().skip(9).take(60) {
            *b = 0xff;
        }
        assert_eq!(parse(&hello), Sni::NotTls);
    }
}
