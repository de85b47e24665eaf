//! `SourceService`: the thermometer-cloud accounts a tenant's owners add while Emberline
//! runs — listed with the configuration file's sources, tested by a sign-in before they are
//! saved, kept in the log by [`SettingsStore`](emberline_settings::SettingsStore) with the
//! password sealed, and run live by the ingest role. A password is never answered back.

use emberline_common::clock;
use emberline_ingest::accounts::{self, FieldType};
use emberline_proto::v1::source_service_server::SourceService;
use emberline_proto::v1::{
    self, DeleteSourceRequest, DeleteSourceResponse, ListSourceKindsRequest,
    ListSourceKindsResponse, ListSourcesRequest, ListSourcesResponse, SetSourceRequest,
    SetSourceResponse, SourceField, SourceKind, TestSourceResponse,
};
use emberline_settings::SourceView;
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::auth::caller_of;
use crate::settings::status;

fn to_proto(v: SourceView) -> v1::Source {
    let s = v.status.unwrap_or_default();
    v1::Source {
        name: v.name,
        kind: v.kind,
        fields: v.fields.into_iter().collect(),
        secret_set: v.secret_set,
        from_config_file: v.from_config_file,
        last_success_ms: s.last_success_ms,
        last_error: s.last_error.unwrap_or_default(),
        running: s.running,
    }
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Text => "text",
        FieldType::Secret => "secret",
        FieldType::Number => "number",
        FieldType::Choice => "choice",
    }
}

#[tonic::async_trait]
impl SourceService for Gateway {
    async fn list_source_kinds(
        &self,
        _request: Request<ListSourceKindsRequest>,
    ) -> Result<Response<ListSourceKindsResponse>, Status> {
        let kinds = accounts::kinds()
            .into_iter()
            .map(|k| SourceKind {
                kind: k.kind.to_owned(),
                label: k.label.to_owned(),
                fields: k
                    .fields
                    .into_iter()
                    .map(|f| SourceField {
                        name: f.name.to_owned(),
                        label: f.label.to_owned(),
                        r#type: type_name(f.kind).to_owned(),
                        required: f.required,
                        help: f.help.to_owned(),
                        choices: f.choices.iter().map(|c| (*c).to_owned()).collect(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListSourceKindsResponse { kinds }))
    }

    async fn list_sources(
        &self,
        request: Request<ListSourcesRequest>,
    ) -> Result<Response<ListSourcesResponse>, Status> {
        let caller = caller_of(&request)?;
        let sources = self
            .settings()?
            .sources(&caller.tenant)
            .map_err(status)?
            .into_iter()
            .map(to_proto)
            .collect();
        Ok(Response::new(ListSourcesResponse { sources }))
    }

    async fn set_source(
        &self,
        request: Request<SetSourceRequest>,
    ) -> Result<Response<SetSourceResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let fields = r.fields.into_iter().collect();
        let store = self.settings()?;
        store
            .set_source(&caller.tenant, &r.kind, &r.name, &fields, clock::now_ms())
            .await
            .map_err(status)?;
        tracing::info!(tenant = %caller.tenant, source = %r.name, kind = %r.kind, by = %caller.name, "source saved");
        let saved = store
            .sources(&caller.tenant)
            .map_err(status)?
            .into_iter()
            .find(|s| s.name == r.name && !s.from_config_file)
            .map(to_proto);
        Ok(Response::new(SetSourceResponse { source: saved }))
    }

    async fn delete_source(
        &self,
        request: Request<DeleteSourceRequest>,
    ) -> Result<Response<DeleteSourceResponse>, Status> {
        let caller = caller_of(&request)?;
        let name = request.into_inner().name;
        self.settings()?
            .delete_source(&caller.tenant, &name, clock::now_ms())
            .await
            .map_err(status)?;
        tracing::info!(tenant = %caller.tenant, source = %name, by = %caller.name, "source removed");
        Ok(Response::new(DeleteSourceResponse {}))
    }

    async fn test_source(
        &self,
        request: Request<SetSourceRequest>,
    ) -> Result<Response<TestSourceResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let fields = r.fields.into_iter().collect();
        let found = self
            .settings()?
            .test_source(&caller.tenant, &r.kind, &r.name, &fields, clock::now_ms())
            .await
            .map_err(status)?;
        let devices = found
            .into_iter()
            .map(|d| v1::FoundDevice {
                device_id: d.device_id,
                name: d.name,
                probes: d.probes.into_iter().collect(),
            })
            .collect();
        Ok(Response::new(TestSourceResponse { devices }))
    }
}
