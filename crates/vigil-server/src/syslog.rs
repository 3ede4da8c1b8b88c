//! Syslog listeners: UDP, TCP (newline or octet-counted framing) and TLS.
//!
//! Messages become events (`vigil_ingest::syslog`) and go into the event
//! log in batches, like HTTP ingest. Back-pressure: a TCP or TLS sender is
//! slowed down by not reading from it while detection is behind; UDP
//! cannot be slowed, so datagrams that arrive then are dropped and counted
//! (`vigil_events_dropped_total`), never silently.

use crate::config::{SyslogListener, SyslogProtocol};
use crate::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};

/// Binds every configured listener and serves it in the background;
/// returns the bound addresses in order.
///
/// # Errors
/// A listener cannot bind, or its TLS files cannot be read.
pub async fn spawn_all(
    listeners: &[SyslogListener],
    state: AppState,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    for l in listeners {
        let product: Option<Arc<str>> = l.product.as_deref().map(Into::into);
        match l.protocol {
            SyslogProtocol::Udp => {
                let sock = UdpSocket::bind(&l.listen)
                    .await
                    .map_err(|e| format!("syslog udp {}: {e}", l.listen))?;
                addrs.push(sock.local_addr().map_err(|e| e.to_string())?);
                tokio::spawn(udp(sock, state.clone(), product));
            }
            SyslogProtocol::Tcp | SyslogProtocol::Tls => {
                let tls = if l.protocol == SyslogProtocol::Tls {
                    Some(acceptor(l)?)
                } else {
                    None
                };
                let listener = TcpListener::bind(&l.listen)
                    .await
                    .map_err(|e| format!("syslog tcp {}: {e}", l.listen))?;
                addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
                let state = state.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, peer)) = listener.accept().await else {
                            continue;
                        };
                        let (state, product, tls) = (state.clone(), product.clone(), tls.clone());
                        tokio::spawn(async move {
                            match tls {
                                None => {
                                    stream_loop(stream, peer, state, product, "syslog-tcp").await
                                }
                                Some(acc) => match acc.accept(stream).await {
                                    Ok(s) => {
                                        stream_loop(s, peer, state, product, "syslog-tls").await
                                    }
                                    Err(e) => eprintln!(
                                        "vigil: syslog tls handshake with {peer} failed: {e}"
                                    ),
                                },
                            }
                        });
                    }
                });
            }
        }
    }
    Ok(addrs)
}

fn acceptor(l: &SyslogListener) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) else {
        return Err(format!(
            "syslog tls {}: tls_cert and tls_key are required",
            l.listen
        ));
    };
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("syslog tls {}: {e}", l.listen))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn to_docs(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .map(|m| vigil_ingest::syslog::parse(m).to_json().to_string())
        .collect()
}

async fn store(
    state: &AppState,
    listener: &'static str,
    peer: &str,
    messages: &[String],
    bytes: u64,
    product: Option<&str>,
) {
    let docs = to_docs(messages);
    let state = state.clone();
    let peer = peer.to_string();
    let product = product.map(str::to_string);
    let result = tokio::task::spawn_blocking(move || {
        state.store_events(listener, &peer, &docs, bytes, product.as_deref())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("vigil: syslog: storing events failed: {e}"),
        Err(e) => eprintln!("vigil: syslog: {e}"),
    }
}

async fn udp(sock: UdpSocket, state: AppState, product: Option<Arc<str>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if state.overloaded() {
            state.count_dropped(1);
            continue;
        }
        // Take whatever else is already waiting, to store it in one batch.
        let mut batch = vec![String::from_utf8_lossy(&buf[..n]).into_owned()];
        let mut bytes = n as u64;
        while batch.len() < 1000 {
            match sock.try_recv_from(&mut buf) {
                Ok((n, _)) => {
                    batch.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    bytes += n as u64;
                }
                Err(_) => break,
            }
        }
        store(
            &state,
            "syslog-udp",
            &peer.to_string(),
            &batch,
            bytes,
            product.as_deref(),
        )
        .await;
    }
}

async fn stream_loop<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    state: AppState,
    product: Option<Arc<str>>,
    listener: &'static str,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        // Back-pressure: while detection is behind, stop reading; the
        // sender's TCP window fills and it slows down.
        while state.overloaded() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // End of stream: a last message without a newline counts.
                if !buf.is_empty() {
                    let last = String::from_utf8_lossy(&buf).into_owned();
                    store(
                        &state,
                        listener,
                        &peer.to_string(),
                        &[last],
                        buf.len() as u64,
                        product.as_deref(),
                    )
                    .await;
                }
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let (messages, used) = vigil_ingest::syslog::split_frames(&buf);
        if !messages.is_empty() {
            store(
                &state,
                listener,
                &peer.to_string(),
                &messages,
                used as u64,
                product.as_deref(),
            )
            .await;
        }
        buf.drain(..used);
        if buf.len() > 1 << 20 {
            eprintln!(
                "vigil: syslog from {peer}: a message over 1 MiB without a frame end; closing"
            );
            return;
        }
    }
}
