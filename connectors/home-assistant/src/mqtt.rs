//! The MQTT side: one client, its event loop on a task, and what the bridge hears of it.
//!
//! The session is clean: after any reconnect the broker knows nothing of the connector, so
//! the bridge re-subscribes and re-publishes everything it wants retained. Publishes made
//! while disconnected are not queued — the bridge keeps the desired state and sends it on
//! the next connection, so a long outage cannot fill memory.

use std::sync::Arc;
use std::time::Duration;

use emberline_common::Backoff;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ConnectorError;
use crate::config::MqttConfig;

/// What the bridge hears from the broker.
#[derive(Debug)]
pub enum MqttEvent {
    /// A (re)connection was accepted: subscribe and publish everything.
    Connected,
    /// The connection dropped; the event loop retries with backoff.
    Disconnected,
    /// A message on a subscribed topic.
    Message {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// Requests queued to the event loop before publishes start failing fast.
const REQUEST_CAPACITY: usize = 4_096;

/// Builds the client and starts its event loop. `will_topic` gets `offline` (retained) if
/// the connector vanishes without saying goodbye.
pub fn start(
    config: &MqttConfig,
    will_topic: &str,
    shutdown: CancellationToken,
) -> Result<Connection, ConnectorError> {
    let endpoint = config.endpoint()?;
    let mut options = MqttOptions::new(&config.client_id, &endpoint.host, endpoint.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_request_channel_capacity(REQUEST_CAPACITY)
        .set_last_will(LastWill::new(will_topic, "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &config.username {
        options.set_credentials(
            user,
            config.resolved_password()?.unwrap_or_default().expose(),
        );
    }
    if endpoint.tls {
        options.set_transport(Transport::Tls(tls(config)?));
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let (tx, rx) = mpsc::channel(1_024);
    let task = tokio::spawn(drive(eventloop, tx, shutdown, config.url.clone()));
    Ok(Connection {
        client,
        events: rx,
        task,
    })
}

/// A started client.
pub struct Connection {
    /// Publishes and subscribes.
    pub client: AsyncClient,
    /// What the broker said.
    pub events: mpsc::Receiver<MqttEvent>,
    /// The event loop; it ends once a disconnect has been sent.
    pub task: tokio::task::JoinHandle<()>,
}

fn tls(config: &MqttConfig) -> Result<TlsConfiguration, ConnectorError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ConnectorError::Tls(format!("reading {}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConnectorError::Tls(format!(
                    "{} holds no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(ConnectorError::Tls(
                    "no system CA certificates found; set home_assistant.mqtt.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(tls)))
}

/// Polls the event loop: forwards connections and messages, backs off on errors (longer
/// when the broker rejects the credentials, so a wrong password is no retry storm). It
/// keeps polling after `shutdown` so the goodbye messages get out, and ends once the
/// disconnect is written (or at once if shut down while the broker is unreachable).
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<MqttEvent>,
    shutdown: CancellationToken,
    url: String,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(60));
    let mut connected = false;
    loop {
        let polled = eventloop.poll().await;
        let event = match polled {
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                tracing::info!(broker = %url, "connected to the MQTT broker");
                crate::connection("mqtt");
                connected = true;
                backoff.reset();
                MqttEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => MqttEvent::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Ok(_) => continue,
            Err(_) if shutdown.is_cancelled() => return,
            Err(e) => {
                let rejected = matches!(
                    e,
                    ConnectionError::ConnectionRefused(
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                    )
                );
                let mut delay = backoff.next_delay();
                if rejected {
                    tracing::error!(broker = %url, "the MQTT broker rejected the credentials; check home_assistant.mqtt.username and password");
                    delay = delay.max(Duration::from_secs(30));
                } else {
                    tracing::warn!(broker = %url, error = %e, ?delay, "MQTT connection lost; reconnecting");
                }
                crate::connection_lost("mqtt");
                if connected {
                    connected = false;
                    if tx.send(MqttEvent::Disconnected).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}
