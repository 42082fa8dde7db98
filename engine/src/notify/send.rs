//! Transports: HTTP POSTs for the webhook-style channels, SMTP (lettre on
//! tokio with rustls) for e-mail. A 2xx answer is success; anything else,
//! or no answer, is a failed attempt the caller retries.

use std::sync::OnceLock;

use crate::net_guard::OutboundPolicy;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::format::{self, HttpRequest};
use crate::clock::UnixTime;
use crate::domain::{
    ChannelKind, ChannelSettings, Notification, NotificationChannel, SmtpSecurity,
};
use crate::error::{Error, Result};

/// A failed attempt, with a message worth storing as `last_error`.
pub type SendResult = std::result::Result<(), String>;

/// Sends one delivery over its channel.
pub async fn send(
    channel: &NotificationChannel,
    secret: Option<&str>,
    n: &Notification,
    now: UnixTime,
    policy: OutboundPolicy,
) -> SendResult {
    inner(channel, secret, n, now, policy)
        .await
        .map_err(|e| match e {
            Error::Internal(m) => m,
            other => other.to_string(),
        })
}

async fn inner(
    channel: &NotificationChannel,
    secret: Option<&str>,
    n: &Notification,
    now: UnixTime,
    policy: OutboundPolicy,
) -> Result<()> {
    let s = &channel.settings;
    let need_url = || {
        s.url
            .as_deref()
            .ok_or_else(|| Error::invalid(format!("channel {} has no url", channel.name)))
    };
    let need_secret = |what: &str| {
        secret.ok_or_else(|| Error::invalid(format!("channel {} has no {what}", channel.name)))
    };
    let request = match channel.kind {
        ChannelKind::Email => return email(s, secret, n).await,
        ChannelKind::Webhook => format::webhook(need_url()?, secret, n, now),
        ChannelKind::Slack => format::slack(need_url()?, n),
        ChannelKind::Teams => format::teams(need_url()?, n),
        ChannelKind::Pagerduty => {
            format::pagerduty(s.url.as_deref(), need_secret("routing key")?, n)
        }
        ChannelKind::Opsgenie => format::opsgenie(s.url.as_deref(), need_secret("API key")?, n),
    };
    post(&request, policy).await
}

/// One client per outbound policy (the process normally uses one), built
/// on the shared address guard: resolved names are filtered and redirects
/// to refused addresses stopped.
fn http(policy: OutboundPolicy) -> Result<&'static reqwest::Client> {
    static CLIENTS: [OnceLock<reqwest::Client>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = &CLIENTS[match policy {
        OutboundPolicy::Public => 0,
        OutboundPolicy::Private => 1,
        OutboundPolicy::Loopback => 2,
    }];
    if let Some(c) = slot.get() {
        return Ok(c);
    }
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // The binary installs aws-lc-rs at start; tests and embedders may not.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let client = crate::net_guard::reqwest_builder(policy)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("certctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
    Ok(slot.get_or_init(|| client))
}

async fn post(r: &HttpRequest, policy: OutboundPolicy) -> Result<()> {
    // A literal IP host is not resolved, so the guard checks it here.
    crate::net_guard::check_url(&r.url, policy).map_err(|e| Error::internal(e.to_string()))?;
    let mut req = http(policy)?.post(&r.url).body(r.body.clone());
    for (k, v) in &r.headers {
        req = req.header(k, v);
    }
    // Errors name the host, never the full URL: Slack and Teams URLs carry
    // their token in the path.
    let host = reqwest::Url::parse(&r.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let resp = req
        .send()
        .await
        .map_err(|e| Error::internal(format!("POST to {host} failed: {}", without_url(&e))))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(Error::internal(format!("{host} answered {status}: {text}")))
    }
}

/// The error with its causes (the address guard's refusal is one of them),
/// the URL left out.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s = format!("{s}: {c}");
        cause = c.source();
    }
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

fn mailbox(s: &str) -> Result<Mailbox> {
    s.parse::<Mailbox>()
        .map_err(|e| Error::invalid(format!("'{s}' is not a valid e-mail address: {e}")))
}

async fn email(s: &ChannelSettings, password: Option<&str>, n: &Notification) -> Result<()> {
    let host = s
        .smtp_host
        .as_deref()
        .ok_or_else(|| Error::invalid("the email channel has no smtp_host"))?;
    let from = s
        .from
        .as_deref()
        .ok_or_else(|| Error::invalid("the email channel has no from address"))?;
    let mut msg = Message::builder()
        .from(mailbox(from)?)
        .subject(&n.subject)
        .header(ContentType::TEXT_PLAIN);
    let mut any = false;
    for to in n
        .recipient
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        msg = msg.to(mailbox(to)?);
        any = true;
    }
    if !any {
        return Err(Error::invalid("the notification has no e-mail recipient"));
    }
    let body = format!(
        "{}\n\n-- \ncertctl notification {} ({})\n",
        n.body, n.id, n.event
    );
    let msg = msg
        .body(body)
        .map_err(|e| Error::invalid(format!("cannot build the e-mail: {e}")))?;
    let builder = match s.smtp_security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        SmtpSecurity::InsecurePlain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host,
        )),
    }
    .map_err(|e| Error::invalid(format!("SMTP host {host}: {e}")))?;
    let port = s.smtp_port.unwrap_or(match s.smtp_security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::InsecurePlain => 25,
    });
    let mut builder = builder
        .port(port)
        .timeout(Some(std::time::Duration::from_secs(15)));
    if let (Some(user), Some(pass)) = (&s.smtp_username, password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass.to_owned()));
    }
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    builder
        .build()
        .send(msg)
        .await
        .map_err(|e| Error::internal(format!("SMTP delivery via {host}:{port} failed: {e}")))?;
    Ok(())
}
