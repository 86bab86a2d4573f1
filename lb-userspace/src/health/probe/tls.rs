//! The TLS client side of `tls = true` checks: a handshake over the
//! check's connection, with certificates accepted unverified (as
//! HAProxy's `check-ssl verify none`: backends are addressed by IP, and
//! their certificates name the service), the handshake's signatures still
//! checked, and SNI only for a DNS name.

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring, verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::FailureReason;

#[cfg(test)]
mod tests;

/// The ALPN protocol an HTTP check offers: it speaks HTTP/1.1 only.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What a check's TLS handshake offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alpn {
    /// No ALPN (a TCP check: any service behind TLS).
    None,
    /// `http/1.1` (an HTTP check).
    Http1,
}

/// Runs a TLS client handshake over `stream`; `host` (an HTTP check's
/// `Host`) is sent as SNI when it is a DNS name. The caller bounds it by
/// the check's deadline. Any failure, the peer closing or answering
/// something else than TLS included, is [`FailureReason::Tls`].
pub(super) async fn handshake(
    stream: TcpStream,
    host: Option<&str>,
    peer: IpAddr,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, FailureReason> {
    let config = config(alpn)?;
    // An IP as server name sends no SNI (RFC 6066 3: literal addresses
    // are not permitted); rustls skips it.
    let name = host
        .and_then(sni_name)
        .unwrap_or(ServerName::IpAddress(peer.into()));
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| FailureReason::Tls(format!("TLS handshake: {e}")))
}

/// The server name `host` gives for SNI: its name without a `:port`, when
/// that is a DNS name (None for an IP address, bracketed IPv6 included,
/// or a text that is no DNS name).
pub(super) fn sni_name(host: &str) -> Option<ServerName<'static>> {
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    match ServerName::try_from(name.to_owned()) {
        Ok(ServerName::DnsName(dns)) => Some(ServerName::DnsName(dns)),
        _ => None,
    }
}

/// The client configuration for `alpn`, built once per process (a check
/// every few seconds per backend must not rebuild it).
fn config(alpn: Alpn) -> Result<Arc<ClientConfig>, FailureReason> {
    static PLAIN: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static HTTP1: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let cell = match alpn {
        Alpn::None => &PLAIN,
        Alpn::Http1 => &HTTP1,
    };
    cell.get_or_init(|| build(alpn))
        .clone()
        .map_err(|e| FailureReason::Local(format!("TLS client setup: {e}")))
}

/// Builds a client configuration: ring's algorithms, TLS 1.2 and 1.3, no
/// certificate verification ([`AnyCertificate`]), no client certificate.
fn build(alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    if alpn == Alpn::Http1 {
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    }
    Ok(Arc::new(config))
}

/// Accepts any certificate chain, as HAProxy's `verify none`: a check
/// asks whether the backend serves TLS, not who it is (its certificate
/// names the service, not the IP checked). The handshake's signatures
/// are still verified with the provider's algorithms, so a peer that
/// cannot sign with its certificate's key fails the check.
#[derive(Debug)]
struct AnyCertificate {
    /// The provider's signature algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
