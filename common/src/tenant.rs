//! Tenants: whose data a device's records are.
//!
//! A device is known in the log and the projections by its *qualified* id: its own id for
//! the [`DEFAULT_TENANT`] (so every record written before tenants existed belongs to it,
//! unchanged), and `tenant/device` for any other tenant. The ingest sink qualifies what a
//! source of a tenant appends; the gateway turns the ids a caller names into qualified ones
//! for the caller's tenant, and answers only with ids of that tenant, unqualified again.
//! A device id therefore may not contain [`SEPARATOR`], and a tenant name is restricted to
//! letters, digits, `.`, `_`, `-` and `@`.

/// The tenant of a single household's install, and of every record written before tenants.
pub const DEFAULT_TENANT: &str = "default";

/// Between the tenant and the device id in a qualified id.
pub const SEPARATOR: char = '/';

/// The qualified id of `device` of `tenant`.
pub fn qualify(tenant: &str, device: &str) -> String {
    if tenant == DEFAULT_TENANT {
        device.to_owned()
    } else {
        format!("{tenant}{SEPARATOR}{device}")
    }
}

/// The tenant and the device id of a qualified id.
pub fn split(qualified: &str) -> (&str, &str) {
    match qualified.split_once(SEPARATOR) {
        Some((tenant, device)) => (tenant, device),
        None => (DEFAULT_TENANT, qualified),
    }
}

/// The device id, within `tenant`, of a qualified id; `None` when it is another tenant's.
pub fn within<'a>(tenant: &str, qualified: &'a str) -> Option<&'a str> {
    let (owner, device) = split(qualified);
    (owner == tenant).then_some(device)
}

/// Whether `name` may name a tenant.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_keeps_plain_ids_and_others_are_prefixed() {
        assert_eq!(qualify(DEFAULT_TENANT, "sim-1"), "sim-1");
        assert_eq!(qualify("acme", "sim-1"), "acme/sim-1");
        assert_eq!(split("sim-1"), (DEFAULT_TENANT, "sim-1"));
        assert_eq!(split("acme/sim-1"), ("acme", "sim-1"));
        for (tenant, device) in [("default", "a"), ("acme", "b"), ("x.y@z", "grill 2")] {
            assert_eq!(split(&qualify(tenant, device)), (tenant, device));
        }
    }

    #[test]
    fn a_tenant_sees_only_its_own_ids() {
        assert_eq!(within("acme", "acme/sim-1"), Some("sim-1"));
        assert_eq!(within(DEFAULT_TENANT, "acme/sim-1"), None);
        assert_eq!(within("acme", "sim-1"), None);
        assert_eq!(within(DEFAULT_TENANT, "sim-1"), Some("sim-1"));
        assert!(!is_valid_name("a/b") && !is_valid_name("") && is_valid_name("acme-2"));
    }
}
