//! `SettingsService`: the notification channels a tenant's owners set up while Emberline
//! runs, and the names they give devices and probes, kept in the log by [`SettingsStore`]
//! and applied live (the notifier takes the channels; `ListDevices` answers with the
//! names). A stored credential is never answered back; a channel or device of another
//! tenant does not exist for the caller.

use std::time::Duration;

use emberline_common::{Secret, clock};
use emberline_notify::{ChannelConfig, ChannelKind, WebhookFormat};
use emberline_proto::v1::settings_service_server::SettingsService;
use emberline_proto::v1::{
    DeleteChannelRequest, DeleteChannelResponse, GetPreferencesRequest, ListChannelsRequest,
    ListChannelsResponse, NotificationChannel, Preferences, RenameDeviceRequest,
    RenameDeviceResponse, SetChannelRequest, SetChannelResponse, TestChannelRequest,
    TestChannelResponse,
};
use emberline_settings::{ChannelView, SettingsError, SettingsStore};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::auth::caller_of;
use crate::status::to_status;
use crate::tenancy::Tenant;

/// How long a test notification may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn to_proto(v: ChannelView) -> NotificationChannel {
    NotificationChannel {
        name: v.name,
        kind: v.kind.to_owned(),
        devices: v.devices,
        target: v.target,
        secret_set: v.secret_set,
        from_config_file: v.from_config_file,
        format: v.format,
    }
}

pub(crate) fn status(e: SettingsError) -> Status {
    match e {
        SettingsError::Invalid(why) => Status::invalid_argument(why),
        SettingsError::NotFound(why) => Status::not_found(why),
        e @ (SettingsError::Key(_) | SettingsError::Sealed(_)) => {
            tracing::error!(error = %e, "settings cannot be opened");
            Status::internal("the settings cannot be opened on this server (see its log)")
        }
        SettingsError::Storage(why) => Status::unavailable(why),
        SettingsError::Failed(why) => Status::failed_precondition(why),
    }
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The channel a request describes (its tenant is set by the store).
fn channel_of(r: SetChannelRequest) -> Result<ChannelConfig, Status> {
    let c = r
        .channel
        .ok_or_else(|| Status::invalid_argument("channel: missing"))?;
    let secret = optional(r.secret).map(Secret::new);
    let kind = match c.kind.as_str() {
        "webhook" => ChannelKind::Webhook {
            url: r.url,
            secret,
            format: match c.format.as_str() {
                "" | "json" => WebhookFormat::Json,
                "slack" => WebhookFormat::Slack,
                "discord" => WebhookFormat::Discord,
                other => {
                    return Err(Status::invalid_argument(format!(
                        "format: {other:?} is not json, slack or discord"
                    )));
                }
            },
        },
        "ntfy" => ChannelKind::Ntfy {
            url: r.url,
            token: secret,
        },
        "sms" => ChannelKind::Sms {
            api_url: optional(r.url).unwrap_or_else(|| "https://api.twilio.com".to_owned()),
            account_sid: r.username,
            // Empty: the stored one is kept (an empty token never validates).
            auth_token: secret.unwrap_or_default(),
            from: r.from,
            to: r.to.into_iter().next().unwrap_or_default(),
        },
        "email" => ChannelKind::Email {
            smtp_url: r.smtp_url,
            from: r.from,
            to: r.to,
            username: optional(r.username),
            password: secret,
        },
        other => {
            return Err(Status::invalid_argument(format!(
                "kind: {other:?} is not webhook, email, sms or ntfy"
            )));
        }
    };
    Ok(ChannelConfig {
        name: c.name,
        user: None,
        devices: c.devices,
        tenant: String::new(),
        kind,
    })
}

impl Gateway {
    pub(crate) fn settings(&self) -> Result<&SettingsStore, Status> {
        self.settings
            .as_deref()
            .ok_or_else(|| Status::failed_precondition("settings are not kept by this gateway"))
    }
}

#[tonic::async_trait]
impl SettingsService for Gateway {
    async fn list_channels(
        &self,
        request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        let caller = caller_of(&request)?;
        let channels = self
            .settings()?
            .channels(&caller.tenant)
            .map_err(status)?
            .into_iter()
            .map(to_proto)
            .collect();
        Ok(Response::new(ListChannelsResponse { channels }))
    }

    async fn set_channel(
        &self,
        request: Request<SetChannelRequest>,
    ) -> Result<Response<SetChannelResponse>, Status> {
        let caller = caller_of(&request)?;
        let channel = channel_of(request.into_inner())?;
        let name = channel.name.clone();
        let store = self.settings()?;
        store
            .set_channel(&caller.tenant, channel, clock::now_ms())
            .await
            .map_err(status)?;
        tracing::info!(tenant = %caller.tenant, channel = %name, by = %caller.name, "notification channel saved");
        let saved = store
            .channels(&caller.tenant)
            .map_err(status)?
            .into_iter()
            .find(|c| c.name == name && !c.from_config_file)
            .map(to_proto);
        Ok(Response::new(SetChannelResponse { channel: saved }))
    }

    async fn delete_channel(
        &self,
        request: Request<DeleteChannelRequest>,
    ) -> Result<Response<DeleteChannelResponse>, Status> {
        let caller = caller_of(&request)?;
        let name = request.into_inner().name;
        self.settings()?
            .delete_channel(&caller.tenant, &name, clock::now_ms())
            .await
            .map_err(status)?;
        tracing::info!(tenant = %caller.tenant, channel = %name, by = %caller.name, "notification channel removed");
        Ok(Response::new(DeleteChannelResponse {}))
    }

    async fn test_channel(
        &self,
        request: Request<TestChannelRequest>,
    ) -> Result<Response<TestChannelResponse>, Status> {
        let caller = caller_of(&request)?;
        let name = request.into_inner().name;
        let channel = self
            .settings()?
            .channel(&caller.tenant, &name)
            .map_err(status)?;
        emberline_notify::send_test(&channel, TEST_TIMEOUT)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(TestChannelResponse {}))
    }

    async fn rename_device(
        &self,
        request: Request<RenameDeviceRequest>,
    ) -> Result<Response<RenameDeviceResponse>, Status> {
        let caller = caller_of(&request)?;
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        if r.device_id.is_empty() {
            return Err(Status::invalid_argument("device_id: required"));
        }
        let device = tenant.device(&r.device_id)?;
        self.known_device(&device).await?;
        let probes: Vec<String> = self
            .store
            .latest(&device)
            .await
            .map_err(to_status)?
            .into_iter()
            .map(|p| p.probe_id)
            .collect();
        let labels = r.probe_labels.into_iter().collect();
        self.settings()?
            .rename_device(
                &caller.tenant,
                &device,
                &r.name,
                &labels,
                &probes,
                clock::now_ms(),
            )
            .await
            .map_err(status)?;
        tracing::info!(tenant = %caller.tenant, device = %r.device_id, by = %caller.name, "device renamed");
        Ok(Response::new(RenameDeviceResponse {}))
    }

    async fn get_preferences(
        &self,
        request: Request<GetPreferencesRequest>,
    ) -> Result<Response<Preferences>, Status> {
        let caller = caller_of(&request)?;
        let p = self.settings()?.preferences(&caller.tenant, &caller.name);
        Ok(Response::new(Preferences {
            unit: p.unit,
            theme: p.theme,
        }))
    }

    async fn set_preferences(
        &self,
        request: Request<Preferences>,
    ) -> Result<Response<Preferences>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let p = self
            .settings()?
            .set_preferences(
                &caller.tenant,
                &caller.name,
                &r.unit,
                &r.theme,
                clock::now_ms(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(Preferences {
            unit: p.unit,
            theme: p.theme,
        }))
    }
}
