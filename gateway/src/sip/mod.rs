//! SIP: a thin adapter over rsipstack (parser, transactions, dialogs,
//! transports) and voxgate's own call control on top.
//!
//! # Layout
//! - [`guard`]: the pre-parse guard (size limit, RFC 4475 strictness).
//! - [`transport`]: our UDP and TCP sockets under rsipstack, guarded.
//! - [`uas`]: the sans-IO per-call UAS state machine.
//! - [`msg`]: header helpers and in-dialog request building.
//! - [`trunk`]: source allow-lists, digest authentication, rate limits.
//! - [`server`]: [`Server`], the tokio driver: dispatch and drain.
//! - `session`: one call's driver task around its [`uas::Uas`].
//! - [`control`]: [`control::SipControl`], the `CallControl` of a call.
//! - [`transfer`]: the sans-IO transfer core (REFER and B2BUA) and sipfrag.
//! - `uac`: outbound requests: the INVITE to an agent, CANCEL, requests.

pub mod control;
pub mod guard;
pub mod msg;
pub mod server;
mod session;
pub mod transfer;
pub mod transport;
pub mod trunk;
mod uac;
pub mod uas;

/// Methods voxgate answers, for `Allow` headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY";

pub use server::{RingingConfig, Server, SipError, SipServerConfig};
pub use trunk::{Cidr, DigestConfig, DtmfMethods, TrunkConfig};
