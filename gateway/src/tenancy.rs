//! The caller's tenant, applied where the gateway reads: every device id a caller names is
//! qualified with their tenant before the store or the log is asked
//! ([`Tenant::device`]), and every record answered is first checked to be the tenant's and
//! unqualified ([`Tenant::own`]). Another tenant's device is answered `NOT_FOUND`, exactly
//! as a device that does not exist: its existence is never confirmed.

use emberline_auth::Caller;
use emberline_common::tenant;
use tonic::{Request, Status};

use crate::auth::caller_of;

/// Whose data a call may see.
#[derive(Clone, Debug)]
pub(crate) struct Tenant(String);

impl Tenant {
    /// The tenant of the request's caller.
    pub(crate) fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        Ok(Self::from(&caller_of(request)?))
    }

    /// The qualified id of the device the caller calls `id` (`NOT_FOUND` when `id` could
    /// only name another tenant's device).
    pub(crate) fn device(&self, id: &str) -> Result<String, Status> {
        if id.contains(tenant::SEPARATOR) {
            return Err(Status::not_found(format!("no device {id:?}")));
        }
        Ok(tenant::qualify(&self.0, id))
    }

    /// The stored id of a rule id a caller chose: qualified with their tenant, unless it
    /// already is (as listed back to them); an id qualified with another tenant names
    /// nothing of theirs.
    pub(crate) fn rule_id(&self, id: &str) -> Result<String, Status> {
        if !id.contains(tenant::SEPARATOR) {
            return Ok(tenant::qualify(&self.0, id));
        }
        match tenant::within(&self.0, id) {
            Some(_) => Ok(id.to_owned()),
            None => Err(Status::not_found(format!("no rule {id:?}"))),
        }
    }

    /// A device filter: empty is every device (of the tenant), else one device.
    pub(crate) fn filter(&self, id: &str) -> Result<Option<String>, Status> {
        if id.is_empty() {
            Ok(None)
        } else {
            self.device(id).map(Some)
        }
    }

    /// The caller's id of a qualified device id; `None` when it is another tenant's.
    pub(crate) fn own(&self, qualified: &str) -> Option<String> {
        tenant::within(&self.0, qualified).map(str::to_owned)
    }

    /// Whether a qualified device id is the tenant's.
    pub(crate) fn owns(&self, qualified: &str) -> bool {
        tenant::within(&self.0, qualified).is_some()
    }

    /// Replaces a qualified id by the caller's id, when it is the tenant's.
    pub(crate) fn unqualify(&self, id: &mut String) -> bool {
        match self.own(id) {
            Some(own) => {
                *id = own;
                true
            }
            None => false,
        }
    }
}

impl From<&Caller> for Tenant {
    fn from(caller: &Caller) -> Self {
        Self(caller.tenant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_qualified_in_and_filtered_out() {
        let acme = Tenant("acme".into());
        assert_eq!(acme.device("grill").expect("id"), "acme/grill");
        assert_eq!(
            acme.device("other/grill").expect_err("slash").code(),
            tonic::Code::NotFound
        );
        assert_eq!(acme.own("acme/grill").as_deref(), Some("grill"));
        assert_eq!(acme.own("grill"), None);
        let home = Tenant(tenant::DEFAULT_TENANT.into());
        assert_eq!(home.device("grill").expect("id"), "grill");
        assert!(!home.owns("acme/grill") && home.owns("grill"));
        assert_eq!(acme.rule_id("mine").expect("id"), "acme/mine");
        assert_eq!(acme.rule_id("acme/mine").expect("id"), "acme/mine");
        assert_eq!(
            home.rule_id("acme/mine").expect_err("theirs").code(),
            tonic::Code::NotFound
        );
        assert_eq!(home.rule_id("mine").expect("id"), "mine");
        let mut id = "acme/grill".to_owned();
        assert!(!home.unqualify(&mut id) && acme.unqualify(&mut id));
        assert_eq!(id, "grill");
    }
}
