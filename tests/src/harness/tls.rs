//! A loopback TLS endpoint in front of a plain-HTTP one (an emulator): it terminates TLS with a
//! server certificate for `localhost` and `127.0.0.1`, signed by a throwaway CA written to a PEM
//! file, and relays the bytes. A process given `SSL_CERT_FILE=<that file>` trusts it as it would
//! trust AWS through the system's roots, so the HTTPS client a binary ships (TLS stack, crypto
//! provider, root loading) is exercised for real, which the plain-HTTP emulator cannot do.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;

/// A running TLS relay.
pub struct TlsRelay {
    addr: SocketAddr,
    ca: tempfile::NamedTempFile,
    task: JoinHandle<()>,
}

impl TlsRelay {
    /// Relays TLS connections on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubetempura test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let mut ca = tempfile::NamedTempFile::new().expect("CA file");
        std::io::Write::write_all(&mut ca, ca_cert.pem().as_bytes()).expect("write CA file");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(server_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server TLS configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the TLS relay");
        let addr = listener.local_addr().expect("relay address");
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        let upstream = upstream.clone();
                        conns.spawn(async move {
                            let Ok(mut tls) = acceptor.accept(stream).await else { return };
                            let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { addr, ca, task }
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The CA's PEM file, for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> &std::path::Path {
        self.ca.path()
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
