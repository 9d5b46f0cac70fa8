//! Authenticated, encrypted TCP for the daemon engine: Noise (`snow`) with the members'
//! Ed25519 identity keys.
//!
//! A TCP connection starts with the `Noise_XX_25519_ChaChaPoly_SHA256` handshake
//! (prologue [`PROLOGUE`]). Each side's Noise static key is a fresh X25519 key; each side
//! proves its identity in its handshake payload, as libp2p's Noise handshake does: its
//! name, its Ed25519 public key, and an Ed25519 signature of
//! `"conclave-noise-static-key:" || role || noise_static_public_key` (role `daemon` or
//! `client`, so that one side's proof is never accepted as the other's). The daemon
//! proves itself first (message 2), the client second (message 3); the daemon's key is
//! pinned by the client, the clients' keys are the daemon's trust list. Signatures are
//! checked strictly (no small-order or non-canonical keys and signatures).
//!
//! After the handshake, the byte stream travels as Noise transport messages of at most
//! 65,535 bytes, each behind a 2-byte big-endian length ([`NoiseStream`]). A message that
//! fails authentication, arrives out of order or is replayed ends the connection.
//!
//! Why Noise rather than TLS: the members already hold raw Ed25519 identity keys and
//! trust lists of them (the policy's `[trust]`); Noise authenticates exactly those, with
//! no certificates, no CA and no X.509 parser on the attack surface, in a small
//! dependency (`snow`, pure Rust).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use zeroize::Zeroizing;

/// The Noise protocol of the daemon's TCP connections.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// The prologue both sides mix into the handshake (the protocol and its version).
pub const PROLOGUE: &[u8] = b"conclave-gcs tcp 1";
/// The largest Noise message (the spec's limit).
const MAX_MESSAGE: usize = 65_535;
/// The AEAD tag of each transport message.
const TAG: usize = 16;
/// The most plaintext in one transport message.
const MAX_CHUNK: usize = MAX_MESSAGE - TAG;
/// The largest handshake message accepted (the real ones are under 500 bytes): an
/// unauthenticated peer cannot make us buffer more.
const MAX_HANDSHAKE_MESSAGE: usize = 1024;
const SIGNED_CONTEXT: &[u8] = b"conclave-noise-static-key:";

/// Why a Noise connection could not be made, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key is not a valid Ed25519 key.
    #[error("invalid key for {name}: {reason}")]
    InvalidKey {
        /// Whose key.
        name: String,
        /// Why.
        reason: String,
    },
    /// The peer does not speak this protocol, or a handshake message is malformed.
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    /// The peer proved an identity that is not on the trust list.
    #[error("the {role} proved identity {name:?}, which is not trusted here")]
    Untrusted {
        /// `daemon` or `client`.
        role: &'static str,
        /// The name it claimed.
        name: String,
    },
    /// The peer named a trusted identity but its key or signature does not match.
    #[error("the {role} claimed identity {name:?} but did not prove it: {reason}")]
    BadProof {
        /// `daemon` or `client`.
        role: &'static str,
        /// The name it claimed.
        name: String,
        /// What failed.
        reason: &'static str,
    },
    /// The connection failed.
    #[error("connection failed during the noise handshake: {0}")]
    Io(#[from] io::Error),
}

/// One side's identity: a name and its Ed25519 signing key (zeroized on drop).
pub struct TcpIdentity {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for TcpIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpIdentity")
            .field("name", &self.name)
            .field("public_key", &hex(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TcpIdentity {
    /// The identity `name` with the Ed25519 key of the 32-byte `seed` (the format of
    /// Conclave's identity files).
    pub fn from_seed(name: impl Into<String>, seed: &[u8]) -> Result<Self, AuthError> {
        let name = name.into();
        check_name(&name)?;
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(seed.try_into().map_err(|_| AuthError::InvalidKey {
                name: name.clone(),
                reason: format!("an Ed25519 seed is 32 bytes, got {}", seed.len()),
            })?);
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            name,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

fn check_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.len() > 255 {
        return Err(AuthError::InvalidKey {
            name: name.into(),
            reason: "a name is 1 to 255 bytes".into(),
        });
    }
    Ok(())
}

/// The identities one side accepts: names and their Ed25519 public keys.
#[derive(Clone, Default)]
pub struct TcpTrust {
    keys: BTreeMap<String, VerifyingKey>,
}

impl fmt::Debug for TcpTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

impl TcpTrust {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `name` with the 32-byte Ed25519 public key `key`. Weak (small-order) and
    /// non-canonical keys are refused.
    pub fn insert(&mut self, name: impl Into<String>, key: &[u8]) -> Result<(), AuthError> {
        let name = name.into();
        check_name(&name)?;
        let invalid = |reason: &str| AuthError::InvalidKey {
            name: name.clone(),
            reason: reason.into(),
        };
        let bytes: [u8; 32] = key
            .try_into()
            .map_err(|_| invalid("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not a curve point"))?;
        if key.is_weak() {
            return Err(invalid("a small-order (weak) key"));
        }
        if key.to_edwards().compress().to_bytes() != bytes {
            return Err(invalid("a non-canonical encoding"));
        }
        self.keys.insert(name, key);
        Ok(())
    }

    /// Whether `name` is trusted.
    pub fn contains(&self, name: &str) -> bool {
        self.keys.contains_key(name)
    }

    /// How many identities are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no identity is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Clone, Copy)]
enum Role {
    Daemon,
    Client,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Daemon => "daemon",
            Role::Client => "client",
        }
    }
}

fn signed_message(role: Role, noise_static: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_CONTEXT.len() + 8 + noise_static.len());
    m.extend_from_slice(SIGNED_CONTEXT);
    m.extend_from_slice(role.name().as_bytes());
    m.extend_from_slice(noise_static);
    m
}

/// `[name length: u8][name][Ed25519 public key: 32][signature: 64]`.
fn proof(me: &TcpIdentity, role: Role, noise_static: &[u8]) -> Vec<u8> {
    let signature = me.key.sign(&signed_message(role, noise_static));
    let mut p = Vec::with_capacity(1 + me.name.len() + 96);
    p.push(me.name.len() as u8);
    p.extend_from_slice(me.name.as_bytes());
    p.extend_from_slice(me.key.verifying_key().as_bytes());
    p.extend_from_slice(&signature.to_bytes());
    p
}

/// Checks the peer's proof against `trust` and the Noise static key the handshake
/// authenticated; the proven name.
fn check_proof(
    payload: &[u8],
    role: Role,
    noise_static: Option<&[u8]>,
    trust: &TcpTrust,
) -> Result<String, AuthError> {
    let malformed = || AuthError::Handshake(format!("malformed {} identity proof", role.name()));
    let (&len, rest) = payload.split_first().ok_or_else(malformed)?;
    let len = usize::from(len);
    if len == 0 || rest.len() != len + 32 + 64 {
        return Err(malformed());
    }
    let name = std::str::from_utf8(&rest[..len]).map_err(|_| malformed())?;
    let key = &rest[len..len + 32];
    let signature = Signature::from_slice(&rest[len + 32..]).map_err(|_| malformed())?;
    let Some(trusted) = trust.keys.get(name) else {
        return Err(AuthError::Untrusted {
            role: role.name(),
            name: name.into(),
        });
    };
    let bad = |reason| AuthError::BadProof {
        role: role.name(),
        name: name.into(),
        reason,
    };
    if trusted.as_bytes() != key {
        return Err(bad("its key is not the trusted key of that name"));
    }
    let noise_static = noise_static.ok_or_else(|| bad("no static key in the handshake"))?;
    trusted
        .verify_strict(&signed_message(role, noise_static), &signature)
        .map_err(|_| bad("the signature of its noise key does not verify"))?;
    Ok(name.into())
}

fn noise_error(e: snow::Error) -> AuthError {
    AuthError::Handshake(e.to_string())
}

/// A handshake with a fresh static key (the key the identity proof signs): the state,
/// and that key's public half.
fn handshake(initiator: bool) -> Result<(snow::HandshakeState, Vec<u8>), AuthError> {
    // The parameters are a constant that parses.
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().expect("valid noise params");
    let b = snow::Builder::new(params);
    let keys = b.generate_keypair().map_err(noise_error)?;
    let private = Zeroizing::new(keys.private);
    let b = b
        .local_private_key(&private)
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(noise_error)?;
    let state = if initiator {
        b.build_initiator()
    } else {
        b.build_responder()
    };
    Ok((state.map_err(noise_error)?, keys.public))
}

async fn send_handshake<S: AsyncWrite + Unpin>(
    io: &mut S,
    state: &mut snow::HandshakeState,
    payload: &[u8],
) -> Result<(), AuthError> {
    let mut buf = vec![0u8; 2 + MAX_HANDSHAKE_MESSAGE];
    let n = state
        .write_message(payload, &mut buf[2..])
        .map_err(noise_error)?;
    buf[..2].copy_from_slice(&(n as u16).to_be_bytes());
    io.write_all(&buf[..2 + n]).await?;
    io.flush().await?;
    Ok(())
}

async fn receive_handshake<S: AsyncRead + Unpin>(
    io: &mut S,
    state: &mut snow::HandshakeState,
) -> Result<Vec<u8>, AuthError> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(AuthError::Handshake(format!(
            "handshake message of {len} bytes (at most {MAX_HANDSHAKE_MESSAGE}): not a conclave noise peer"
        )));
    }
    let mut message = vec![0u8; len];
    io.read_exact(&mut message).await?;
    let mut payload = vec![0u8; len];
    let n = state
        .read_message(&message, &mut payload)
        .map_err(noise_error)?;
    payload.truncate(n);
    Ok(payload)
}

/// The client's side of the handshake: proves `me`, and accepts only a daemon whose
/// identity is in `daemon` (usually one pinned key).
pub async fn connect<S>(
    mut io: S,
    me: &TcpIdentity,
    daemon: &TcpTrust,
) -> Result<(NoiseStream<S>, String), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut state, public) = handshake(true)?;
    send_handshake(&mut io, &mut state, &[]).await?;
    let theirs = receive_handshake(&mut io, &mut state).await?;
    let name = check_proof(&theirs, Role::Daemon, state.get_remote_static(), daemon)?;
    send_handshake(&mut io, &mut state, &proof(me, Role::Client, &public)).await?;
    let transport = state.into_transport_mode().map_err(noise_error)?;
    Ok((NoiseStream::new(io, transport), name))
}

/// The daemon's side of the handshake: proves `me`, then checks the client's proof
/// against `clients`. `Err` when no secure channel could be made; `Ok` with the
/// channel and, inside, the client's proven name or why it is refused (so that the
/// daemon can tell it over the channel).
pub async fn accept<S>(
    mut io: S,
    me: &TcpIdentity,
    clients: &TcpTrust,
) -> Result<(NoiseStream<S>, Result<String, AuthError>), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut state, public) = handshake(false)?;
    let first = receive_handshake(&mut io, &mut state).await?;
    if !first.is_empty() {
        return Err(AuthError::Handshake(
            "unexpected payload in the first message".into(),
        ));
    }
    send_handshake(&mut io, &mut state, &proof(me, Role::Daemon, &public)).await?;
    let theirs = receive_handshake(&mut io, &mut state).await?;
    let name = check_proof(&theirs, Role::Client, state.get_remote_static(), clients);
    let transport = state.into_transport_mode().map_err(noise_error)?;
    Ok((NoiseStream::new(io, transport), name))
}

/// A byte stream carried in Noise transport messages over `S` (see the module's
/// documentation). Writes are buffered until `flush`, as with TLS streams.
pub struct NoiseStream<S> {
    io: S,
    noise: snow::TransportState,
    /// Ciphertext read and not yet decrypted: `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Plaintext decrypted and not yet read: `plain[pstart..]`.
    plain: Vec<u8>,
    pstart: usize,
    /// Ciphertext to write: `wbuf[wstart..]`.
    wbuf: Vec<u8>,
    wstart: usize,
}

impl<S> fmt::Debug for NoiseStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseStream").finish_non_exhaustive()
    }
}

impl<S> NoiseStream<S> {
    fn new(io: S, noise: snow::TransportState) -> Self {
        Self {
            io,
            noise,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            plain: Vec::new(),
            pstart: 0,
            wbuf: Vec::new(),
            wstart: 0,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Decrypts the next complete message in `rbuf`, if there is one; `Ok(false)` if
    /// more ciphertext is needed.
    fn decrypt_next(&mut self) -> io::Result<bool> {
        let have = self.rend - self.rstart;
        if have < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([
            self.rbuf[self.rstart],
            self.rbuf[self.rstart + 1],
        ]));
        if have < 2 + len {
            return Ok(false);
        }
        if len < TAG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("noise message of {len} bytes is shorter than its tag"),
            ));
        }
        let message = &self.rbuf[self.rstart + 2..self.rstart + 2 + len];
        self.plain.resize(len - TAG, 0);
        let n = self
            .noise
            .read_message(message, &mut self.plain)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("noise message refused ({e}): forged, replayed or reordered"),
                )
            })?;
        self.plain.truncate(n);
        self.pstart = 0;
        self.rstart += 2 + len;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        Ok(true)
    }
}

impl<S: AsyncWrite + Unpin> NoiseStream<S> {
    /// Writes out the buffered ciphertext.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wstart < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wstart..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wstart += n;
        }
        self.wbuf.clear();
        self.wstart = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoiseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pstart < this.plain.len() {
                let n = (this.plain.len() - this.pstart).min(buf.remaining());
                buf.put_slice(&this.plain[this.pstart..this.pstart + n]);
                this.pstart += n;
                return Poll::Ready(Ok(()));
            }
            if this.decrypt_next()? {
                continue;
            }
            // Room for one whole message: move what is left of a partial one to the front.
            if this.rstart > 0 {
                this.rbuf.copy_within(this.rstart..this.rend, 0);
                this.rend -= this.rstart;
                this.rstart = 0;
            }
            if this.rbuf.len() < 2 + MAX_MESSAGE {
                this.rbuf.resize(2 + MAX_MESSAGE, 0);
            }
            let mut read = ReadBuf::new(&mut this.rbuf[this.rend..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                return if this.rend == 0 {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a noise message",
                    )))
                };
            }
            this.rend += n;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoiseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_CHUNK);
        this.wbuf.resize(2 + n + TAG, 0);
        let len = this
            .noise
            .write_message(&data[..n], &mut this.wbuf[2..])
            .map_err(|e| io::Error::other(format!("noise encryption failed: {e}")))?;
        this.wbuf.truncate(2 + len);
        this.wbuf[..2].copy_from_slice(&(len as u16).to_be_bytes());
        this.wstart = 0;
        // Accepted: push it out now if the socket takes it; `flush` finishes the job.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, seed: u8) -> TcpIdentity {
        TcpIdentity::from_seed(name, &[seed; 32]).unwrap()
    }

    fn trust(ids: &[&TcpIdentity]) -> TcpTrust {
        let mut t = TcpTrust::new();
        for id in ids {
            t.insert(id.name(), &id.public_key()).unwrap();
        }
        t
    }

    async fn pair(
        client: &TcpIdentity,
        daemon_trust: &TcpTrust,
        daemon: &TcpIdentity,
        client_trust: &TcpTrust,
    ) -> (
        Result<(NoiseStream<tokio::io::DuplexStream>, String), AuthError>,
        Result<
            (
                NoiseStream<tokio::io::DuplexStream>,
                Result<String, AuthError>,
            ),
            AuthError,
        >,
    ) {
        let (a, b) = tokio::io::duplex(1 << 20);
        tokio::join!(
            connect(a, client, daemon_trust),
            accept(b, daemon, client_trust)
        )
    }

    #[tokio::test]
    async fn both_sides_prove_their_identity_and_bytes_flow_both_ways() {
        let (alice, server) = (identity("alice", 1), identity("conclave-daemon", 2));
        let (c, s) = pair(&alice, &trust(&[&server]), &server, &trust(&[&alice])).await;
        let (mut c, daemon_name) = c.unwrap();
        let (mut s, client_name) = s.unwrap();
        assert_eq!(daemon_name, "conclave-daemon");
        assert_eq!(client_name.unwrap(), "alice");
        // More than one noise message, both ways.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            c.write_all(&sent).await.unwrap();
            c.flush().await.unwrap();
            let mut back = vec![0u8; 5];
            c.read_exact(&mut back).await.unwrap();
            back
        });
        let mut got = vec![0u8; big.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        s.write_all(b"hello").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn an_untrusted_client_gets_a_channel_and_a_refusal() {
        let (mallory, server) = (identity("mallory", 3), identity("d", 2));
        let alice = identity("alice", 1);
        let (c, s) = pair(&mallory, &trust(&[&server]), &server, &trust(&[&alice])).await;
        assert!(c.is_ok());
        let (_, verdict) = s.unwrap();
        assert!(
            matches!(verdict, Err(AuthError::Untrusted { role: "client", ref name }) if name == "mallory"),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn a_client_claiming_a_trusted_name_with_another_key_is_refused() {
        let server = identity("d", 2);
        let alice = identity("alice", 1);
        let fake = identity("alice", 9);
        let (_, s) = pair(&fake, &trust(&[&server]), &server, &trust(&[&alice])).await;
        let (_, verdict) = s.unwrap();
        assert!(
            matches!(verdict, Err(AuthError::BadProof { role: "client", .. })),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn a_client_refuses_a_daemon_that_is_not_the_pinned_one() {
        let alice = identity("alice", 1);
        let (real, impostor) = (identity("d", 2), identity("d", 7));
        let (c, _) = pair(&alice, &trust(&[&real]), &impostor, &trust(&[&alice])).await;
        let err = c.unwrap_err();
        assert!(
            matches!(err, AuthError::BadProof { role: "daemon", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_plain_hello_or_garbage_is_no_handshake() {
        let server = identity("d", 2);
        let (mut a, b) = tokio::io::duplex(4096);
        let accepting = tokio::spawn(async move { accept(b, &server, &TcpTrust::new()).await });
        // A plain-protocol client: its frame's length prefix is no handshake message.
        a.write_all(b"\xff\xffCNCLgarbage").await.unwrap();
        let err = accepting.await.unwrap().unwrap_err();
        assert!(matches!(err, AuthError::Handshake(_)), "{err:?}");
    }

    /// A man in the middle between a client and the daemon that passes the handshake
    /// (its three messages) untouched, then applies `meddle` to the client's first
    /// transport message; what the daemon then reads.
    async fn through_meddler(meddle: fn(Vec<u8>) -> Vec<Vec<u8>>) -> io::Result<Vec<u8>> {
        let (alice, server) = (identity("alice", 1), identity("d", 2));
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mid, mut d) = tokio::io::duplex(1 << 16);
        let (dt, ct) = (trust(&[&server]), trust(&[&alice]));
        let relay = tokio::spawn(async move {
            let (mut ar, mut aw) = tokio::io::split(b);
            let (mut br, mut bw) = tokio::io::split(mid);
            let back = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut br, &mut aw).await;
            });
            let mut count = 0;
            loop {
                let mut len = [0u8; 2];
                if ar.read_exact(&mut len).await.is_err() {
                    break;
                }
                let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if ar.read_exact(&mut m).await.is_err() {
                    break;
                }
                count += 1;
                let out = if count == 3 { meddle(m) } else { vec![m] };
                for m in out {
                    bw.write_all(&(m.len() as u16).to_be_bytes()).await.unwrap();
                    bw.write_all(&m).await.unwrap();
                }
            }
            back.abort();
        });
        let (c, s) = tokio::join!(connect(a, &alice, &dt), accept(&mut d, &server, &ct));
        let (mut c, _) = c.unwrap();
        let (mut s, name) = s.unwrap();
        assert_eq!(name.unwrap(), "alice");
        c.write_all(b"payload").await.unwrap();
        c.flush().await.unwrap();
        let mut got = vec![0u8; 14];
        let read = s.read_exact(&mut got).await.map(|_| got);
        relay.abort();
        read
    }

    #[tokio::test]
    async fn a_tampered_or_replayed_message_ends_the_stream() {
        // Flipped, or replayed (sent twice): never read as data.
        for meddle in [
            (|mut m: Vec<u8>| {
                m[0] ^= 1;
                vec![m]
            }) as fn(Vec<u8>) -> Vec<Vec<u8>>,
            |m| vec![m.clone(), m],
        ] {
            let err = through_meddler(meddle).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("forged, replayed"), "{err}");
        }
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        let mut t = TcpTrust::new();
        // The identity point (small order) and a non-canonical y = p encoding.
        let identity_point = {
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        };
        assert!(t.insert("x", &identity_point).is_err());
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(t.insert("x", &p).is_err());
        assert!(t.insert("x", &[1u8; 31]).is_err());
        assert!(t.insert("", &identity("a", 1).public_key()).is_err());
        assert!(t.is_empty());
        assert!(TcpIdentity::from_seed("a", &[0u8; 31]).is_err());
    }
}
