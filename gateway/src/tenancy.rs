//! The caller's tenant, applied where the gateway reads: every device id a caller names is
//! qualified with their tenant before the store or the log is asked
//! ([`Tenant::device`]), and every record answered is first checked to be the tenant's and
//! unqualified ([`Tenant::own`]). Another tenant's device is answered `NOT_FOUND`, exactly
//! as a device that does not exist: its existence is never confirmed.
//!
//! A share link's caller sees less still: one device, one cook of it, and readings only
//! from the cook's start to its end ([`Tenant::window`]).

use emberline_auth::{Caller, Grant};
use emberline_common::tenant;
use emberline_projections::CookSession;
use tonic::{Request, Status};

use crate::auth::caller_of;

/// Whose data a call may see.
#[derive(Clone, Debug)]
pub(crate) struct Tenant {
    name: String,
    /// A share link's cook: the only one its caller sees.
    share: Option<Shared>,
}

/// What a share link shows.
#[derive(Clone, Debug)]
struct Shared {
    cook_id: String,
    device: String,
}

impl Tenant {
    /// The tenant of the request's caller.
    pub(crate) fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        Ok(Self::from(&caller_of(request)?))
    }

    /// The tenant's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The qualified id of the device the caller calls `id` (`NOT_FOUND` when `id` could
    /// only name another tenant's device, or for a share link another device than its).
    pub(crate) fn device(&self, id: &str) -> Result<String, Status> {
        let qualified = tenant::qualify(&self.name, id);
        if id.contains(tenant::SEPARATOR) || !self.shared_device(&qualified) {
            return Err(Status::not_found(format!("no device {id:?}")));
        }
        Ok(qualified)
    }

    fn shared_device(&self, qualified: &str) -> bool {
        self.share.as_ref().is_none_or(|s| s.device == qualified)
    }

    /// Whether the caller may see `cook`: the tenant's, and for a share link its cook.
    pub(crate) fn sees_cook(&self, cook: &CookSession) -> bool {
        self.owns(&cook.device_id)
            && self
                .share
                .as_ref()
                .is_none_or(|s| s.cook_id == cook.cook_id)
    }

    /// Whether a record of cook `cook_id` (none: of no cook) is the caller's to see: always,
    /// except through a share link, which sees only its own cook's.
    pub(crate) fn sees_cook_id(&self, cook_id: Option<&str>) -> bool {
        self.share
            .as_ref()
            .is_none_or(|s| cook_id == Some(s.cook_id.as_str()))
    }

    /// For a share link, the cook whose time window bounds what its caller sees.
    pub(crate) fn shared_cook(&self) -> Option<&str> {
        self.share.as_ref().map(|s| s.cook_id.as_str())
    }

    /// The time window, epoch ms, a share link's caller sees of its cook: from its start to
    /// its end, or to `i64::MAX` while it runs.
    pub(crate) fn window(cook: &CookSession) -> (i64, i64) {
        (cook.started_time, cook.ended_time.unwrap_or(i64::MAX))
    }

    /// The stored id of a rule id a caller chose: qualified with their tenant, unless it
    /// already is (as listed back to them); an id qualified with another tenant names
    /// nothing of theirs.
    pub(crate) fn rule_id(&self, id: &str) -> Result<String, Status> {
        if !id.contains(tenant::SEPARATOR) {
            return Ok(tenant::qualify(&self.name, id));
        }
        match tenant::within(&self.name, id) {
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
        if !self.shared_device(qualified) {
            return None;
        }
        tenant::within(&self.name, qualified).map(str::to_owned)
    }

    /// Whether a qualified device id is the caller's to see.
    pub(crate) fn owns(&self, qualified: &str) -> bool {
        self.own(qualified).is_some()
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
        let share = match &caller.grant {
            Grant::Share { cook_id, device } => Some(Shared {
                cook_id: cook_id.clone(),
                device: device.clone(),
            }),
            _ => None,
        };
        Self {
            name: caller.tenant.clone(),
            share,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_qualified_in_and_filtered_out() {
        let acme = Tenant {
            name: "acme".into(),
            share: None,
        };
        assert_eq!(acme.device("grill").expect("id"), "acme/grill");
        assert_eq!(
            acme.device("other/grill").expect_err("slash").code(),
            tonic::Code::NotFound
        );
        assert_eq!(acme.own("acme/grill").as_deref(), Some("grill"));
        assert_eq!(acme.own("grill"), None);
        let home = Tenant {
            name: tenant::DEFAULT_TENANT.into(),
            share: None,
        };
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
        let link = Tenant {
            name: "acme".into(),
            share: Some(Shared {
                cook_id: "c".into(),
                device: "acme/grill".into(),
            }),
        };
        assert!(link.owns("acme/grill") && !link.owns("acme/smoker"));
        assert!(link.sees_cook_id(Some("c")) && !link.sees_cook_id(Some("d")));
        assert!(
            !link.sees_cook_id(None),
            "a link sees its cook's records only"
        );
        assert!(acme.sees_cook_id(None) && acme.sees_cook_id(Some("d")));
        assert_eq!(
            link.device("smoker").expect_err("not shared").code(),
            tonic::Code::NotFound
        );
    }
}
