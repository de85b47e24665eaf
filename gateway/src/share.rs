//! `ShareService`: live share links of one cook. The link's token is a bearer like any
//! other; what it may see is bounded by the access layer (read calls of a cook page only)
//! and by [`Tenant`] (its device, its cook, readings inside the cook's time).

use emberline_proto::v1::share_service_server::ShareService;
use emberline_proto::v1::{
    CreateShareLinkRequest, CreateShareLinkResponse, ListShareLinksRequest, ListShareLinksResponse,
    RevokeShareLinkRequest, RevokeShareLinkResponse, ShareLink,
};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::auth_api::{blocking, blocking_async};
use crate::tenancy::Tenant;

fn link_to_proto(s: emberline_auth::store::ShareLink) -> ShareLink {
    ShareLink {
        id: s.id,
        cook_id: s.cook_id,
        created_at_ms: s.created_at_ms,
        expires_at_ms: s.expires_at_ms,
    }
}

#[tonic::async_trait]
impl ShareService for Gateway {
    async fn create_share_link(
        &self,
        request: Request<CreateShareLinkRequest>,
    ) -> Result<Response<CreateShareLinkResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = crate::auth::caller_of(&request)?;
        let tenant = Tenant::from(&caller);
        let r = request.into_inner();
        let cook = self.existing_cook(&tenant, &r.cook_id).await?;
        let (token, link) = blocking_async(move || async move {
            auth.create_share(
                &caller.name,
                &caller.tenant,
                &cook.cook_id,
                &cook.device_id,
                r.expires_at_ms,
            )
            .await
        })
        .await?;
        Ok(Response::new(CreateShareLinkResponse {
            path: format!("/s/{token}"),
            token,
            link: Some(link_to_proto(link)),
        }))
    }

    async fn list_share_links(
        &self,
        request: Request<ListShareLinksRequest>,
    ) -> Result<Response<ListShareLinksResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = crate::auth::caller_of(&request)?;
        let cook = request.into_inner().cook_id;
        let links = blocking(move || {
            auth.list_shares(&caller.tenant, (!cook.is_empty()).then_some(cook.as_str()))
        })
        .await?;
        Ok(Response::new(ListShareLinksResponse {
            links: links.into_iter().map(link_to_proto).collect(),
        }))
    }

    async fn revoke_share_link(
        &self,
        request: Request<RevokeShareLinkRequest>,
    ) -> Result<Response<RevokeShareLinkResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = crate::auth::caller_of(&request)?;
        let id = request.into_inner().id;
        blocking_async(move || async move {
            auth.revoke_share(&caller.name, &caller.tenant, &id).await
        })
        .await?;
        Ok(Response::new(RevokeShareLinkResponse {}))
    }
}
